"""Measuring a benchmark's commands: wall and CPU time, and the peak memory of a whole process tree."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def _tree_memory_mb(pid: int) -> tuple[float, float]:
    """Resident memory of a process and all its descendants (Linux /proc), in all and anonymous only (what
    the processes allocated themselves, without the page cache they map)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, anonymous, stack = 0, 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                elif line.startswith("RssAnon:"):
                    anonymous += int(line.split()[1])
        except OSError:
            continue
    return total / 1024, anonymous / 1024


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, float]:
    """Wall seconds, CPU seconds (user + system of the whole tree), peak tree RSS and peak tree anonymous
    RSS (MB) of a command; raises with its stderr if it fails. CPU time is the fair figure on a machine
    shared with other jobs."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    peak, peak_anonymous = 0.0, 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_anonymous
        while not done.is_set():
            rss, anonymous = _tree_memory_mb(process.pid)
            peak, peak_anonymous = max(peak, rss), max(peak_anonymous, anonymous)
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    done.set()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed:\n{err[-2000:]}")
    return time.perf_counter() - started, _children_cpu() - cpu_before, peak, peak_anonymous


@contextlib.contextmanager
def work_folder(workdir: Path | None, prefix: str) -> Iterator[Path]:
    """``workdir`` (created if missing), or a temporary folder removed afterwards."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix=prefix) as folder:
            yield Path(folder)
    else:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        yield Path(workdir)


def total_memory_gib() -> float:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
