"""Worker processes for the probes."""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext


def fork_context() -> BaseContext:
    """fork where the platform has it (workers start at once, with torch and the data already in memory),
    else spawn."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
