"""The app floor: the ``marblekit`` command, its subcommands, the demo and the benchmarks. The only code that
imports several stages; the stages expose typed APIs and never import this package."""
