"""Export a backbone to ONNX (and optionally TensorRT) inside a Triton model repository, then check the
exported graph against PyTorch: onnxruntime vs the in-memory model on two batch sizes and two lengths."""

from __future__ import annotations

import argparse
from pathlib import Path

from marblekit.app.exit_codes import ExitCode
from marblekit.core.backbones import all_backbones


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=sorted(all_backbones()), metavar="MODEL",
                        help=f"backbone to export: {', '.join(sorted(all_backbones()))}")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", type=Path, metavar="DIR",
                         help="local HF-format directory (config.json + model.safetensors or pytorch_model.bin)")
    weights.add_argument("--random-init", action="store_true",
                         help="seeded random weights in the published shape (recorded as such everywhere)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-init (default 0)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                        help="fp16: half-precision weights and outputs, norms kept in FP32; int8: the fp32 graph with "
                             "onnxruntime's dynamic INT8 quantisation of every MatMul, for CPUs (default fp32)")
    parser.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx",
                        help="tensorrt also builds model.plan from the fp16 graph (needs a GPU)")
    parser.add_argument("--repo", type=Path, default=Path("model_repository"),
                        help="Triton model repository to write into (default model_repository/)")
    parser.add_argument("--name", help="model name in the repository (default MODEL, or MODEL-fp16 / MODEL-int8)")
    parser.add_argument("--no-parity", action="store_true", help="skip the onnxruntime-vs-PyTorch check")


def run(args: argparse.Namespace) -> int:
    from marblekit.core.backbones import get_backbone
    from marblekit.export.pipeline import export_model

    spec = get_backbone(args.model)
    if args.format == "tensorrt" and args.precision != "fp16":
        raise ValueError("--format tensorrt builds an FP16 engine; add --precision fp16")
    report = export_model(spec, repo=args.repo, name=args.name, checkpoint=args.checkpoint,
                          random_init=args.random_init, seed=args.seed, precision=args.precision,
                          tensorrt=args.format == "tensorrt", check_parity=not args.no_parity)
    print(report.summary())
    return ExitCode.OK if report.parity_ok else ExitCode.GATE_FAILED
