"""Sub-parsers from a table of command modules, shared by ``marblekit`` and ``marblekit bench``.

Only the module of the command on the command line is imported (its flags and its imports are its own), so
``marblekit models`` never pays for importing torch and ``marblekit --help`` lists every command from the
table alone. A leaf module defines ``add_arguments(parser)`` and ``run(args) -> int``; a group module (like
``bench``) defines ``SUBCOMMANDS``, a table of its own.
"""

from __future__ import annotations

import argparse
import importlib

from marblekit.app.exit_codes import EPILOG


def add_subcommands(subparsers: argparse._SubParsersAction, table: dict[str, tuple[str, str]],
                    argv: list[str]) -> None:
    """One sub-parser per ``table`` entry; the chosen one (the first positional word of ``argv``) gets its
    module's flags and stores its ``run`` as ``args.run``."""
    chosen = next((word for word in argv if not word.startswith("-")), None)
    for name, (module_name, help_text) in table.items():
        if name != chosen:
            subparsers.add_parser(name, help=help_text, description=help_text)
            continue
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                                    epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        group = getattr(module, "SUBCOMMANDS", None)
        if group is None:
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
        else:
            nested = sub.add_subparsers(dest=f"{name}_command", metavar=name.upper(), required=True)
            add_subcommands(nested, group, argv[argv.index(name) + 1:])
