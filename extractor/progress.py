"""Progress for long extractions: tracks, audio-hours per second of wall time, ETA (tqdm), failures, and what the job
waits for when a server does not answer."""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger(__name__)


class Progress:
    """A tqdm bar over tracks; skipped tracks count towards the total but not towards the speed."""

    def __init__(self, total: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.bar = tqdm(total=total, unit="track", disable=not enabled, dynamic_ncols=True, smoothing=0.1)
        self.started = time.perf_counter()
        self.audio_s = 0.0
        self.failed = 0

    def plan(self, total: int) -> None:
        """The tracks this run will process, once the store says which are left."""
        self.bar.reset(total=total)
        self.started = time.perf_counter()

    def skip(self, tracks: int) -> None:
        self.bar.total -= tracks
        self.bar.refresh()

    def advance(self, tracks: int, audio_s: float, failed: int = 0) -> None:
        """``tracks`` more processed, ``failed`` of them failed, holding ``audio_s`` seconds of audio."""
        self.audio_s += audio_s
        self.failed += failed
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        failures = f", {self.failed} failed" if self.failed else ""
        self.bar.set_postfix_str(f"{self.audio_s / 3600 / elapsed:.3f} audio-h/s{failures}", refresh=False)
        self.bar.update(tracks)

    def waiting(self, message: str) -> None:
        """Say what the job waits for (a server that does not answer), above the bar or in the log."""
        if self.enabled:
            tqdm.write(f"extract: {message}", file=sys.stderr)
        else:
            log.warning("%s", message)

    def close(self) -> None:
        self.bar.close()
