"""Benchmarks. Speed goals are met here, never in timed tests; every ratio is measured side by side in one run.

  backbone MODEL   audio-seconds per second: transformers eager fp32 one window at a time (how the MARBLE
                   reference extracts) vs onnxruntime batched, fp32 and dynamic INT8
  serve MODEL      windows/s through the embedded Triton vs in-process onnxruntime on the same batches,
                   pooled and full outputs, and the serving overhead
  features MODEL   the feature service vs calling Triton directly with the same windows, at 1, 8 and 32
                   clients: audio-seconds per second, p50/p99 latency, the batch window, cache hits
  extract MODEL    audio-seconds per second: marblekit extract through the embedded Triton and with
                   --engine local vs the bare engine on the same windows vs a MARBLE-style loop; the engine's
                   GFLOP/s against the fp32 GEMM peak; each pipeline stage timed alone (the bottleneck);
                   store bytes per audio-hour vs fp32 .npy
  extract-tuning MODEL
                   marblekit extract through the embedded Triton over a grid of request batch, requests in
                   flight, decoder processes, model instances and intra-op threads: audio-seconds per second
  extract-memory   peak memory of the whole extract process tree on a short and on a 2-hour track
  scale            one catalog through one process and through a local Ray with 1 and 2 workers:
                   audio-seconds per second, Ray / single, the scheduling overhead per block
  probe            the probe grid of a GTZAN-sized synthetic task: a reference-style sweep (one process
                   per configuration, one .npy per item read every epoch) vs marblekit's per-layer,
                   per-probe and vectorised modes; wall time, peak memory and the selected probe
  probe-memory     a store larger than the memory budget (default MTG-sized, 24 GB) probed with
                   --memory-gb: peak resident and anonymous memory against the store's size
"""

from __future__ import annotations

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "backbone": ("marblekit.app.bench.backbone", "reference eager loop vs onnxruntime fp32 / INT8"),
    "serve": ("marblekit.app.bench.serve", "embedded Triton vs in-process onnxruntime, same batches"),
    "features": ("marblekit.app.bench.features", "feature service vs direct Triton; cache-hit latency"),
    "extract": ("marblekit.app.bench.extract",
                "extract through Triton and local vs bare engine vs MARBLE loop; GEMM peak; stages"),
    "extract-tuning": ("marblekit.app.bench.extract_tuning",
                       "extract through Triton over batch, in-flight, decoders, instances, threads"),
    "extract-memory": ("marblekit.app.bench.extract_memory", "peak memory of extract: a short vs a 2-hour track"),
    "scale": ("marblekit.app.bench.scale", "one process vs Ray with 1 and 2 workers, same catalog"),
    "probe": ("marblekit.app.bench.probe", "reference-style probe sweep vs marblekit's grid modes"),
    "probe-memory": ("marblekit.app.bench.probe_memory", "probe a store larger than the memory budget"),
}
