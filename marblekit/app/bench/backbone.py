"""``marblekit bench backbone``: how fast a backbone turns audio into hidden states on this machine.

(a) transformers eager fp32, one window per forward call, ``output_hidden_states=True`` — how the MARBLE
    reference extracts; (b) the exported graph in onnxruntime, batched, in fp32 and with dynamic INT8
    (MatMul weights only). All three run in one process on the same windows, so the ratios are comparable.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from marblekit.core.backbones import get_backbone
from marblekit.core.served_model import FRAMES, INPUT
from marblekit.export.architecture import HiddenStatesEncoder
from marblekit.export.builders import MODEL_CLASSES, base_model
from marblekit.export.onnx_export import export_onnx, serving_graph
from marblekit.export.parity import per_layer_cosine
from marblekit.export.quantize import dynamic_int8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="backbone name (see marblekit models)")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", help="local HF-format checkpoint directory")
    weights.add_argument("--random-init", action="store_true", help="seeded random weights")
    parser.add_argument("--windows", type=int, default=8, help="windows per measurement (default 8)")
    parser.add_argument("--window-seconds", type=float, default=5.0, help="window length (default 5 s)")
    parser.add_argument("--batch", type=int, default=4, help="onnxruntime batch size (default 4)")
    parser.add_argument("--threads", type=int, default=0, help="threads for both runtimes (0 = all cores)")
    parser.add_argument("--workdir", default="work/bench", help="where the exported graphs go")


def run(args: argparse.Namespace) -> int:
    print(bench_backbone(args).render())
    return 0


@dataclass
class BenchRow:
    runtime: str
    seconds: float
    audio_seconds: float
    note: str = ""

    @property
    def speed(self) -> float:
        return self.audio_seconds / self.seconds


@dataclass
class BenchResult:
    model: str
    machine: str
    rows: list[BenchRow]

    def render(self) -> str:
        baseline = self.rows[0].speed
        lines = [f"bench backbone {self.model} on {self.machine}",
                 f"{'runtime':<38} {'audio s/s':>10} {'vs (a)':>8}  note"]
        for row in self.rows:
            lines.append(f"{row.runtime:<38} {row.speed:>10.2f} {row.speed / baseline:>7.2f}x  {row.note}")
        return "\n".join(lines)


def machine_description() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, onnxruntime {ort.__version__}"


def reference_model(args: argparse.Namespace, spec) -> torch.nn.Module:
    """The transformers model exactly as a reference extractor would hold it."""
    if args.checkpoint:
        _, model_class = MODEL_CLASSES[spec.family]
        return model_class.from_pretrained(args.checkpoint, attn_implementation="eager").eval()
    torch.manual_seed(0)
    return base_model(spec)


def time_calls(run, batches: list[np.ndarray]) -> float:
    run(batches[0])  # warm-up: allocations, thread pools, kernel selection
    started = time.perf_counter()
    for batch in batches:
        run(batch)
    return time.perf_counter() - started


def bench_backbone(args: argparse.Namespace) -> BenchResult:
    spec = get_backbone(args.model)
    if spec.family not in MODEL_CLASSES:
        raise ValueError(f"bench backbone compares transformers with onnxruntime; {spec.name!r} is not a "
                         f"transformers backbone (pick one of the MERT / HuBERT / data2vec rows of marblekit models)")
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    model = reference_model(args, spec)
    samples = int(args.window_seconds * spec.sample_rate)
    rng = np.random.default_rng(0)
    windows = (0.1 * rng.standard_normal((args.windows, samples))).astype(np.float32)
    audio_seconds = args.windows * args.window_seconds

    def eager(window: np.ndarray) -> None:
        with torch.no_grad():
            model(torch.from_numpy(window), output_hidden_states=True)

    workdir = Path(args.workdir) / spec.name
    fp32_path = export_onnx(serving_graph(HiddenStatesEncoder(model, spec.pre_layer_norm), spec, "fp32"),
                            workdir / "model.onnx")
    int8_path = dynamic_int8(fp32_path, workdir / "model.int8.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for name, path in (("fp32", fp32_path), ("int8", int8_path))}
    batches = [windows[i:i + args.batch] for i in range(0, args.windows, args.batch)]

    rows = [BenchRow("(a) transformers eager fp32, 1 window", time_calls(eager, list(windows[:, None])),
                     audio_seconds, f"{threads} threads")]
    outputs = {}
    for name, session in sessions.items():
        seconds = time_calls(lambda b, s=session: s.run([FRAMES], {INPUT: b}), batches)
        outputs[name] = session.run([FRAMES], {INPUT: batches[0]})[0]
        rows.append(BenchRow(f"(b) onnxruntime {name}, batch {args.batch}", seconds, audio_seconds))
    columns = spec.frame_columns
    rows[-1].note = f"min layer cosine vs fp32 {per_layer_cosine(outputs['fp32'], outputs['int8'], columns).min():.4f}"
    return BenchResult(spec.name, machine_description(), rows)
