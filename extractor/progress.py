"""Progress for long extractions: tracks, audio-hours per second of wall time, ETA (tqdm)."""

from __future__ import annotations

import time

from tqdm import tqdm


class Progress:
    """A tqdm bar over tracks; skipped tracks count towards the total but not towards the speed."""

    def __init__(self, total: int, enabled: bool = True):
        self.bar = tqdm(total=total, unit="track", disable=not enabled, dynamic_ncols=True, smoothing=0.1)
        self.started = time.perf_counter()
        self.audio_s = 0.0

    def skip(self, tracks: int) -> None:
        self.bar.total -= tracks
        self.bar.refresh()

    def advance(self, tracks: int, audio_s: float) -> None:
        self.audio_s += audio_s
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix_str(f"{self.audio_s / 3600 / elapsed:.3f} audio-h/s", refresh=False)
        self.bar.update(tracks)

    def close(self) -> None:
        self.bar.close()
