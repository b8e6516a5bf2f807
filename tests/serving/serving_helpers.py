"""Helpers of the serving tests."""

from __future__ import annotations

import subprocess


def read_banner(process: subprocess.Popen[str], last_line: str = "Ctrl-C stops it.") -> str:
    """What a serving command prints up to and including the line that says it is ready."""
    banner = []
    for line in process.stdout:
        banner.append(line)
        if last_line in line:
            break
    return "".join(banner)
