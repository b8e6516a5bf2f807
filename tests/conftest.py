"""Fixtures every test folder shares. ``s3_bucket``: a real S3-compatible server, moto's server mode in its own
process on 127.0.0.1, with the AWS environment pointed at it (as a user's ``AWS_ENDPOINT_URL`` would point at
MinIO), stopped after the test."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """``s3://<bucket>`` on a fresh local server; the AWS variables of this test point at it."""
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'marblekit[s3]')")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path / "moto.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the S3 test server did not start; see {log.name}") from None
                time.sleep(0.2)
        for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test",
                            "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(name, value)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()  # a filesystem cached by an earlier test points elsewhere
        s3fs.S3FileSystem().mkdir("marblekit-test")
        yield "s3://marblekit-test"
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
