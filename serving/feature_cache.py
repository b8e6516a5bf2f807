"""The feature service's content cache: the same audio bytes, model and options are answered from here, never
computed again.

Keys are SHA-256 digests of the audio's bytes together with the served graph's checksum and the options, so a
re-exported model never serves stale features. Entries are serialized responses, kept most recently used first
within ``max_bytes``; with ``persist`` they are also written to a Zarr group (one uint8 array per key), read
back on a miss and when the service starts again.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import zarr


def cache_key(audio_sha256: str, onnx_sha256: str, options: dict[str, object]) -> str:
    """The digest an answer is cached under."""
    text = json.dumps({"audio": audio_sha256, "graph": onnx_sha256, "options": options}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class FeatureCache:
    """A thread-safe LRU of serialized answers, bounded in bytes, optionally persisted."""

    def __init__(self, max_bytes: int, persist: Path | None = None):
        self.max_bytes = max_bytes
        self._entries: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._group = zarr.open_group(str(persist), mode="a") if persist is not None else None

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                return value
        if self._group is not None and key in self._group:
            value = self._group[key][...].tobytes()
            self._remember(key, value)
            return value
        return None

    def put(self, key: str, value: bytes) -> None:
        self._remember(key, value)
        if self._group is not None and key not in self._group:
            array = self._group.create_array(key, shape=(len(value),), dtype="uint8", chunks=(max(len(value), 1),))
            array[...] = np.frombuffer(value, np.uint8)

    def _remember(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return
            self._entries[key] = value
            self._bytes += len(value)
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped)
