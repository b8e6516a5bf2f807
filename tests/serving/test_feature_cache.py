"""The feature service's content cache: bounded in bytes, most recently used kept, persisted across restarts."""

from __future__ import annotations

from pathlib import Path

from marblekit.serving.feature_cache import FeatureCache, cache_key


def test_keys_change_with_the_audio_the_graph_and_every_option() -> None:
    base = cache_key("a" * 64, "g" * 64, {"model": "m", "window_s": 30.0})
    assert base == cache_key("a" * 64, "g" * 64, {"window_s": 30.0, "model": "m"})  # order does not matter
    assert len({base, cache_key("b" * 64, "g" * 64, {"model": "m", "window_s": 30.0}),
                cache_key("a" * 64, "h" * 64, {"model": "m", "window_s": 30.0}),
                cache_key("a" * 64, "g" * 64, {"model": "m", "window_s": 5.0})}) == 4


def test_least_recently_used_answers_go_first_within_the_byte_budget() -> None:
    cache = FeatureCache(max_bytes=250)
    for key in "abc":
        cache.put(key, key.encode() * 100)
    assert cache.get("a") is None and cache.size_bytes == 200  # a was the oldest when c arrived
    assert cache.get("b") == b"b" * 100
    cache.put("d", b"d" * 100)  # b was just read: c goes
    assert (cache.get("b"), cache.get("c")) == (b"b" * 100, None)
    cache.put("huge", b"x" * 251)  # larger than the whole budget: not kept, nothing evicted for it
    assert cache.get("huge") is None and cache.get("d") == b"d" * 100


def test_persisted_answers_survive_a_restart_and_are_read_back(tmp_path: Path) -> None:
    FeatureCache(1 << 20, tmp_path / "cache.zarr").put("k", b"\x00answer\xff")
    restarted = FeatureCache(1 << 20, tmp_path / "cache.zarr")
    assert restarted.size_bytes == 0 and restarted.get("k") == b"\x00answer\xff"
    assert restarted.size_bytes == len(b"\x00answer\xff")  # read back into memory on the first miss
