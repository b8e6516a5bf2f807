"""The ``marblekit`` command. Each subcommand lives in its own module and is imported only when it runs,
so ``marblekit models`` or ``marblekit extract`` never pay for importing torch."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: subcommand -> (module that defines ``add_arguments(parser)`` and ``run(args) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("marblekit.commands.demo", "the main job: synthetic suite -> export -> Triton -> stores -> probes"),
    "models": ("marblekit.commands.models", "list the backbones with their rates, shapes and weights"),
    "export": ("marblekit.export.command", "export a backbone to ONNX / TensorRT into a Triton repository"),
    "extract": ("marblekit.extractor.command", "extract a catalog's features into a resumable Zarr v3 store"),
    "serve": ("marblekit.serving.command", "serve a model repository with the embedded CPU Triton"),
    "bench": ("marblekit.commands.bench", "benchmarks with side-by-side ratios: backbone, serve, extract, probe"),
    "synth": ("marblekit.synth.command", "render the synthetic labelled music suite with FluidSynth"),
    "probe": ("marblekit.probes.command", "score a feature store on a MARBLE task: the whole probe grid in one job"),
    "report": ("marblekit.probes.report", "MARBLE-style table and per-layer plot across probe results"),
}


def add_subcommands(subparsers: argparse._SubParsersAction, table: dict[str, tuple[str, str]],
                    run_attribute: str) -> None:
    """Add one sub-parser per ``table`` entry; its module's ``run`` is stored as ``args.<run_attribute>``."""
    for name, (module_name, help_text) in table.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(**{run_attribute: module.run})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marblekit",
        description="Features from pre-trained music audio models for whole catalogs, served by Triton, "
        "stored in Zarr and scored on the MARBLE benchmark.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log library details (debug level)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_subcommands(subparsers, COMMANDS, "run")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except (ValueError, OSError) as err:  # bad input, a missing file, a full disk, a lost server
        print(f"marblekit {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
