"""The ``marblekit`` command. Each subcommand is a module of ``marblekit.app.commands`` that parses its flags
into its stage's typed request; only the module of the command being run is imported
(``marblekit.app.subcommands``), so ``marblekit models`` or ``marblekit extract`` never pay for torch."""

from __future__ import annotations

import argparse
import logging
import sys

from marblekit.app.exit_codes import EPILOG, ExitCode, exit_code_of
from marblekit.app.subcommands import add_subcommands
from marblekit.core.retry import describe

#: subcommand -> (module that defines ``add_arguments(parser)`` and ``run(args) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("marblekit.app.commands.demo", "the main job: synthetic suite -> export -> Triton -> stores -> probes"),
    "models": ("marblekit.app.commands.models", "list the backbones with their rates, shapes and weights"),
    "export": ("marblekit.app.commands.export", "export a backbone to ONNX / TensorRT into a Triton repository"),
    "extract": ("marblekit.app.commands.extract", "extract a catalog's features into a resumable Zarr v3 store"),
    "serve": ("marblekit.app.commands.serve", "serve a model repository with the embedded CPU Triton"),
    "serve-features": ("marblekit.app.commands.serve_features",
                       "the feature service for apps: gRPC audio in, features out, in front of Triton"),
    "bench": ("marblekit.app.commands.bench", "benchmarks with side-by-side ratios: backbone, serve, extract, probe"),
    "synth": ("marblekit.app.commands.synth", "render the synthetic labelled music suite with FluidSynth"),
    "musdb-remix": ("marblekit.app.commands.musdb_remix",
                    "MUSDB18's remixing augmentation drawn once: a MUSDB18 folder whose train/ holds the remixes"),
    "probe": ("marblekit.app.commands.probe",
              "score a feature store on a MARBLE task: the whole probe grid in one job"),
    "report": ("marblekit.app.commands.report", "MARBLE-style table and per-layer plot across probe results"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser of ``argv``: every command listed, the flags of the one ``argv`` names."""
    parser = argparse.ArgumentParser(
        prog="marblekit", epilog=EPILOG,
        description="Features from pre-trained music audio models for whole catalogs, served by Triton, "
        "stored in Zarr and scored on the MARBLE benchmark.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log library details (debug level)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_subcommands(subparsers, COMMANDS, argv)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "run", None):
        parser.print_help()
        return ExitCode.USAGE
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"marblekit {args.command}: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as err:
        code = exit_code_of(err)
        if code is None:
            raise
        print(f"marblekit {args.command}: error: {describe(err)}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
