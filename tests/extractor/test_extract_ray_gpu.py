"""``--device cuda`` on Ray: each worker asks Ray for one GPU and runs onnxruntime's CUDA provider on it.

Here a local Ray is told it has one GPU (a logical resource: this machine has none), so the worker is placed
exactly as on a GPU node; with the CPU onnxruntime its engine cannot start, and the driver reports the worker's
own reason instead of waiting or retrying. Where onnxruntime has CUDA, the same run extracts the store one
process writes on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from extract_helpers import HANDCRAFTED, local_request, tones_and_a_broken_file

from marblekit.core.store_layout import open_pooled
from marblekit.extractor.api import extract

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'marblekit[ray]')")

from marblekit.extractor.ray_runner import RaySettings, extract_on_ray  # noqa: E402

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def ray_with_one_gpu() -> None:
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def request(catalog: Path, store: Path, repo: Path, device: str):
    return local_request(catalog, store, repo, HANDCRAFTED, window_s=2.0, block_tracks=2, workers=1, device=device)


def test_a_worker_whose_gpu_engine_cannot_start_is_reported_with_its_reason(ray_with_one_gpu, model_repo: Path,
                                                                            tmp_path: Path) -> None:
    if HAS_CUDA:
        pytest.skip("onnxruntime has CUDA here: the GPU worker starts (see the next test)")
    catalog = tones_and_a_broken_file(tmp_path / "audio", 3, 0.2)
    with pytest.raises(RuntimeError, match=r"a Ray worker could not start: ValueError: --device cuda: this "
                                           r"onnxruntime .* has no CUDAExecutionProvider"):
        extract_on_ray(request(catalog, tmp_path / "store.zarr", model_repo, "cuda"), RaySettings())


@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a GPU (this onnxruntime has no CUDA provider)")
def test_gpu_workers_extract_the_store_one_cpu_process_writes(ray_with_one_gpu, model_repo: Path,
                                                              tmp_path: Path) -> None:
    catalog = tones_and_a_broken_file(tmp_path / "audio", 6, 0.2)
    extract(request(catalog, tmp_path / "cpu.zarr", model_repo, "cpu"))
    summary = extract_on_ray(request(catalog, tmp_path / "gpu.zarr", model_repo, "cuda"), RaySettings())
    assert summary.finalized and (summary.done, summary.failed) == (6, 1)
    cpu, gpu = open_pooled(tmp_path / "cpu.zarr"), open_pooled(tmp_path / "gpu.zarr")
    for name in ("window_track", "window_start", "window_length", "track_id", "track_status"):
        np.testing.assert_array_equal(getattr(gpu, name), getattr(cpu, name), err_msg=name)
    np.testing.assert_allclose(gpu.pooled, cpu.pooled, rtol=1e-3, atol=1e-4)  # float16 storage, other kernels
