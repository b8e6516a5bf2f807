"""The store layout: its one writer and one reader agree, layers of different widths sit side by side without
padding, format 1 stores stay readable, and stores that are not complete marblekit stores of a readable version
are refused with a reason."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import zarr

from marblekit.core.backbones import BackboneSpec
from marblekit.core.store_layout import (ATTRS_KEY, DONE, FAILED, FORMAT_VERSION, FRAMES, LAYOUT_KEY, POOLED,
                                         StoreAttrs, StoreReader, open_pooled, write_store)

ATTRS = StoreAttrs(model="m", sample_rate=16000, frame_rate=50.0, window_s=5.0, hop_s=5.0, layers=(0, 1, 2),
                   layer_dims=(4, 4, 4), weighted_layers=(1, 2), random_init=True, precision="fp32",
                   frame_layers=(0, 1, 2))


def small_store(path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"pooled": rng.normal(size=(5, 12)).astype(np.float16), "window_track": np.array([0, 0, 2, 2, 2]),
              "frames": rng.normal(size=(12, 12)).astype(np.float16), "frame_counts": np.array([3, 2, 2, 4, 1])}
    write_store(path, ATTRS, ["a", "b", "c"], track_status=[DONE, FAILED, DONE], track_error=["", "broken", ""],
                **arrays)
    return arrays


def test_what_the_writer_writes_the_reader_reads(tmp_path: Path) -> None:
    arrays = small_store(tmp_path / "s.zarr")
    view = open_pooled(tmp_path / "s.zarr")
    assert view.attrs == ATTRS
    np.testing.assert_array_equal(view.pooled, arrays["pooled"])
    np.testing.assert_array_equal(view.window_track, arrays["window_track"])
    np.testing.assert_array_equal(view.window_start, [0, 1, 0, 1, 2])
    np.testing.assert_array_equal(view.window_length, np.full(5, 5.0))
    assert view.track_id.tolist() == ["a", "b", "c"] and view.track_error.tolist() == ["", "broken", ""]
    np.testing.assert_array_equal(view.track_status, [DONE, FAILED, DONE])
    means = view.track_pooled.astype(np.float64)
    np.testing.assert_allclose(means[0], arrays["pooled"][:2].astype(np.float64).mean(0), atol=1e-3)
    np.testing.assert_allclose(means[2], arrays["pooled"][2:].astype(np.float64).mean(0), atol=1e-3)
    assert np.isnan(means[1]).all()
    np.testing.assert_array_equal(view.frame_offsets, np.concatenate([[0], np.cumsum(arrays["frame_counts"])]))
    np.testing.assert_array_equal(view.frames[...], arrays["frames"])
    assert StoreReader(tmp_path / "s.zarr").status_counts() == (2, 1)


def test_a_plain_zarr_reader_sees_labelled_arrays(tmp_path: Path) -> None:
    small_store(tmp_path / "s.zarr")
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert group["pooled"].metadata.dimension_names == ("window", "feature")
    assert group.attrs[ATTRS_KEY]["format_version"] == FORMAT_VERSION and group.attrs[LAYOUT_KEY]["finalized"]


def test_layers_of_different_widths_sit_side_by_side_unpadded(tmp_path: Path) -> None:
    attrs = dataclasses.replace(ATTRS, layer_dims=(5, 2, 2), weighted_layers=(1, 2), frame_layers=(0, 2))
    rng = np.random.default_rng(1)
    pooled, frames = rng.normal(size=(2, 9)).astype(np.float16), rng.normal(size=(4, 7)).astype(np.float16)
    write_store(tmp_path / "w.zarr", attrs, ["a"], pooled=pooled, window_track=[0, 0], frames=frames,
                frame_counts=[1, 3])
    group = zarr.open_group(str(tmp_path / "w.zarr"), mode="r")
    assert group["pooled"].shape == (2, 9) and group["frames"].shape == (4, 7), "5 + 2 + 2 and 5 + 2 columns"
    reader = StoreReader(tmp_path / "w.zarr")
    columns = reader.attrs.columns
    np.testing.assert_array_equal(reader.read(POOLED)[:, columns.span(1)], pooled[:, 5:7])
    np.testing.assert_array_equal(reader.read(FRAMES)[:, reader.attrs.frame_columns.span(2)], frames[:, 5:])
    with pytest.raises(ValueError, match="must share one width"):
        BackboneSpec("odd", "x", 16000, 160, 160, 2, 4, layer_dims=(4, 2, 4), weighted_layers=(1, 2))


def test_a_format_1_store_reads_as_its_rows_flattened(tmp_path: Path) -> None:
    """marblekit 0.1 wrote pooled [W, L, D] and one ``dim``; readers see [W, L*D] and layers 0..L-1 of that
    width, the weighted sum over 1..L-1 as then."""
    path = tmp_path / "old.zarr"
    pooled = np.random.default_rng(2).normal(size=(3, 3, 4)).astype(np.float16)
    group = zarr.open_group(str(path), mode="w")
    for name, values in (("pooled", pooled), ("track_pooled", pooled[:1]), ("window_track", np.zeros(3, np.int32)),
                         ("window_start", np.arange(3.0)), ("window_length", np.full(3, 5.0)),
                         ("track_id", np.array(["a"])), ("track_status", np.array([DONE], np.uint8)),
                         ("track_error", np.array([""]))):
        group.create_array(name, data=values)
    old = {key: value for key, value in ATTRS.to_json().items()
           if key not in ("layer_dims", "weighted_layers", "layer_names", "format_version", "frame_layers")}
    group.attrs.update({ATTRS_KEY: {**old, "dim": 4}, LAYOUT_KEY: {"block_tracks": 1, "num_blocks": 1,
                                                                    "finalized": True}})
    reader = StoreReader(path)
    assert reader.attrs.format_version == 1 and reader.attrs.layer_dims == (4, 4, 4)
    assert reader.attrs.weighted_layers == (1, 2)
    np.testing.assert_array_equal(reader.read(POOLED), pooled.reshape(3, 12))
    np.testing.assert_array_equal(open_pooled(path).track_pooled, pooled[:1].reshape(1, 12))


def test_a_store_from_before_the_format_version_reads_as_version_1(tmp_path: Path) -> None:
    small_store(tmp_path / "s.zarr")
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r+")
    attrs = dict(group.attrs[ATTRS_KEY])
    del attrs["format_version"]
    group.attrs[ATTRS_KEY] = attrs
    assert StoreReader(tmp_path / "s.zarr").attrs.format_version == 1


@pytest.mark.parametrize("change, message", [
    (lambda attrs, layout: attrs.update(format_version=FORMAT_VERSION + 1), "upgrade marblekit"),
    (lambda attrs, layout: attrs.pop("layer_dims"), r"lacks layer_dims \(expected the fields"),
    (lambda attrs, layout: layout.update(finalized=False), "is unfinished: 0 of 1 blocks done"),
])
def test_what_is_not_a_readable_store_is_refused(tmp_path: Path, change, message: str) -> None:
    small_store(tmp_path / "s.zarr")
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r+", use_consolidated=False)
    attrs, layout = dict(group.attrs[ATTRS_KEY]), dict(group.attrs[LAYOUT_KEY])
    change(attrs, layout)
    group.attrs.update({ATTRS_KEY: attrs, LAYOUT_KEY: layout})
    zarr.consolidate_metadata(str(tmp_path / "s.zarr"))
    with pytest.raises(ValueError, match=message):
        StoreReader(tmp_path / "s.zarr")


def test_a_folder_that_is_no_store_is_refused(tmp_path: Path) -> None:
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(ValueError, match="is not a marblekit store"):
        StoreReader(tmp_path / "plain.zarr")
    with pytest.raises(FileNotFoundError, match="not found"):
        StoreReader(tmp_path / "absent.zarr")


def test_resuming_compares_settings_but_not_the_writer_version() -> None:
    newer = dataclasses.replace(ATTRS, marblekit_version="9.9")
    assert newer.settings() == ATTRS.settings()
    assert dataclasses.replace(ATTRS, hop_s=2.5).settings() != ATTRS.settings()
