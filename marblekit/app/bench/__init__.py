"""Benchmarks (``marblekit bench ...``): each module is one benchmark with its flags and its body. Speed goals
are met here, never in timed tests; every ratio is measured side by side in one run."""
