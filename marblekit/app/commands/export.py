"""Export a backbone to ONNX (and optionally TensorRT) inside a Triton model repository, then check the
exported graph against PyTorch: the serving runtime vs the in-memory model on two batch sizes and two lengths.
With --gate, a reduced-precision variant is also scored against fp32 on a synthetic suite and published only
when no task loses more than the threshold."""

from __future__ import annotations

import argparse
from pathlib import Path

from marblekit.app.exit_codes import ExitCode
from marblekit.core.backbones import all_backbones
from marblekit.core.runtimes import RUNTIMES
from marblekit.export.calibration import FIT_WINDOWS, calibration_set


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=sorted(all_backbones()), metavar="MODEL",
                        help=f"backbone to export: {', '.join(sorted(all_backbones()))}")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", type=Path, metavar="DIR",
                         help="local HF-format directory (config.json + model.safetensors or pytorch_model.bin)")
    weights.add_argument("--random-init", action="store_true",
                         help="seeded random weights in the published shape (recorded as such everywhere)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-init (default 0)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16", "int8"), default="fp32",
                        help="fp16: half-precision weights and outputs, norms kept in FP32 (for GPUs); bf16: the fp32 "
                             "graph computed in BF16 by OpenVINO (CPUs with AVX-512 BF16 or AMX); int8: the fp32 graph "
                             "quantised, static with --calibration (or --gate's suite), else dynamic (default fp32)")
    parser.add_argument("--calibration", type=Path, metavar="SUITE",
                        help=f"int8: a synthetic suite (marblekit synth) whose train clips give {FIT_WINDOWS} "
                             f"calibration windows for static quantisation (default: --gate's suite; without "
                             f"either, dynamic quantisation)")
    parser.add_argument("--runtime", choices=("auto", *RUNTIMES), default="auto",
                        help="CPU runtime of the embedded config: auto (default) times those that can run the "
                             "precision on the exported graph and keeps the fastest")
    parser.add_argument("--cpu-instances", type=int, default=1, metavar="N",
                        help="model instances of the embedded CPU config, each its own session (default 1)")
    parser.add_argument("--cpu-threads", type=int, default=0, metavar="N",
                        help="intra-op threads of each instance (default 0: all cores; instances x threads = cores "
                             "on a larger machine, see the README's tuning guide)")
    parser.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx",
                        help="tensorrt also builds model.plan from the fp16 graph (needs a GPU)")
    parser.add_argument("--repo", type=Path, default=Path("model_repository"),
                        help="Triton model repository to write into (default model_repository/)")
    parser.add_argument("--name", help="model name in the repository (default MODEL, or MODEL-PRECISION)")
    parser.add_argument("--no-parity", action="store_true", help="skip the exported-vs-PyTorch check")
    gate = parser.add_argument_group("probe-score gate (reduced precisions)")
    gate.add_argument("--gate", type=Path, metavar="SUITE",
                      help="extract this synthetic suite with the variant and with fp32, probe both and publish "
                           "the variant only if no task's test score drops by more than --gate-threshold")
    gate.add_argument("--gate-threshold", type=float, default=0.5, metavar="POINTS",
                      help="largest allowed drop of a task's test score, in points (percent; dB for separation; "
                           "default 0.5)")
    gate.add_argument("--gate-tasks", nargs="+", metavar="TASK", help="tasks of the suite to gate on (default all)")
    gate.add_argument("--gate-max-epochs", type=int, metavar="N", help="cap the gate's probe epochs")
    gate.add_argument("--gate-out", type=Path, metavar="DIR",
                      help="keep the gate's stores and probe results here (default: a temporary folder, removed "
                           "after a pass and kept after a failure)")
    gate.add_argument("--no-progress", action="store_true", help="no progress bars during the gate")


def run(args: argparse.Namespace) -> int:
    from marblekit.core.backbones import get_backbone
    from marblekit.export.pipeline import export_model
    from marblekit.export.triton_config import ServingShape

    spec = get_backbone(args.model)
    if args.format == "tensorrt" and args.precision != "fp16":
        raise ValueError("--format tensorrt builds an FP16 engine; add --precision fp16")
    calibration_suite = args.calibration or (args.gate if args.precision == "int8" else None)
    if args.calibration and args.precision != "int8":
        raise ValueError(f"--calibration is for --precision int8, not {args.precision}")
    if args.cpu_instances < 1 or args.cpu_threads < 0:
        raise ValueError(f"--cpu-instances must be at least 1 and --cpu-threads at least 0, got "
                         f"{args.cpu_instances} and {args.cpu_threads}")
    options = dict(checkpoint=args.checkpoint, random_init=args.random_init, seed=args.seed, runtime=args.runtime,
                   shape=ServingShape(cpu_instances=args.cpu_instances, cpu_threads=args.cpu_threads))
    if calibration_suite:
        options["calibration"] = calibration_set(calibration_suite, spec, seed=args.seed)
    if args.gate:
        return run_gated(args, spec, options)
    report = export_model(spec, repo=args.repo, name=args.name, precision=args.precision,
                          tensorrt=args.format == "tensorrt", check_parity=not args.no_parity, **options)
    print(report.summary())
    return ExitCode.OK if report.parity_ok else ExitCode.GATE_FAILED


def run_gated(args: argparse.Namespace, spec, options: dict) -> int:
    from marblekit.app.export_gate import GateSettings, export_gated

    if args.format == "tensorrt" or args.no_parity:
        raise ValueError("--gate exports for the embedded CPU server with its parity check; drop --format "
                         "tensorrt / --no-parity")
    settings = GateSettings(args.gate, args.gate_threshold, tuple(args.gate_tasks or ()), args.gate_max_epochs,
                            progress=not args.no_progress, out=args.gate_out)
    report, result = export_gated(spec, args.repo, settings, args.precision, args.name, **options)
    if result is None:
        print(f"{report.name}: the exported graph failed its parity check; not gated, not published")
        return ExitCode.GATE_FAILED
    print(result.table())
    if result.passed:
        print(f"gate passed: published {report.model_dir} (deltas recorded in its marblekit.json)")
        return ExitCode.OK
    print(f"GATE FAILED: a task lost more than {args.gate_threshold:g} points; {report.name} was not published "
          f"(stores and probe results kept in {result.staging})")
    return ExitCode.GATE_FAILED
