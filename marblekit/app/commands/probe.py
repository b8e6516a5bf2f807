"""Score a feature store on one MARBLE (or synthetic) task: the whole probe grid in one job.

Every single layer and the softmax-weighted sum of layers 1..L, times six learning rates, each probe with
its own plateau schedule, early stopping and best state; the winner is chosen on validation and reported
on test. Writes OUT/results.json and OUT/leaderboard.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from marblekit.core.store_location import store_location


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from marblekit.probes.scheduling import MODES
    from marblekit.probes.separation import DECODERS, SeparationSettings
    from marblekit.probes.types import LEARNING_RATES, SEED

    parser.add_argument("store", type=store_location,
                        help="Zarr feature store written by marblekit extract: a folder or an fsspec URL (s3://...)")
    parser.add_argument("--task", required=True, help="task name (marblekit.probes.tasks.TASKS), e.g. gtzan-genre")
    parser.add_argument("--data", type=Path, default=Path("."), help="the task's dataset folder (default: .)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for results.json and leaderboard.md")
    parser.add_argument("--mode", choices=MODES, help="vectorised (all probes stacked; default on a GPU), "
                        "per-layer (one layer choice's learning rates stacked per worker process; default on a "
                        "CPU) or per-probe (one probe per worker process)")
    parser.add_argument("--workers", type=int, default=0, help="worker processes of the per-layer and per-probe "
                        "modes (0 = all cores)")
    parser.add_argument("--device", help="torch device for vectorised mode and separation "
                        "(default: cuda if available)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of every probe (default {SEED}, MARBLE's)")
    parser.add_argument("--max-epochs", type=int, help="override the task's epoch limit (quick runs)")
    parser.add_argument("--memory-gb", type=float, help="RAM the features may take (default: half of the "
                        "available memory); features over it are memory-mapped from a scratch file and read "
                        "layer by layer, so a store larger than RAM still trains, with the same results")
    parser.add_argument("--scratch", type=Path, help="folder for the memory-mapped feature file (default: the "
                        "temp folder; needs room for the task's rows at every layer when they exceed --memory-gb, "
                        "and always in the worker modes, which share them with their workers)")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=list(LEARNING_RATES),
                        help="learning-rate grid (default: MARBLE's six)")
    parser.add_argument("--lr-find", action=argparse.BooleanOptionalAction,
                        help="instead of the grid's rates, one probe per layer choice at the rate a learning-rate "
                             "range test suggests (Lightning 1.9's lr_find, as MARBLE's auto_lr_find); default: on "
                             "where the reference does it (giantsteps-key), off elsewhere")
    separation = parser.add_argument_group(
        "separation (musdb18, synth-separation)", "one LSTM mask head per stem and grid point, trained one after "
        "another (--mode and --workers do not apply); the defaults are MARBLE's, shrink them for CPU runs")
    defaults = SeparationSettings()
    separation.add_argument("--lstm-hidden", type=int, default=defaults.hidden,
                            help=f"hidden size of the head's layers and LSTM (default {defaults.hidden})")
    separation.add_argument("--chunk-seconds", type=float, default=defaults.chunk_s,
                            help=f"training chunk length (default {defaults.chunk_s})")
    separation.add_argument("--samples-per-track", type=int, default=defaults.samples_per_track,
                            help=f"training chunks per track and epoch (default {defaults.samples_per_track})")
    separation.add_argument("--separation-batch", type=int, default=defaults.batch_size,
                            help=f"chunks per training batch (default {defaults.batch_size})")
    separation.add_argument("--separation-decode", choices=DECODERS, default=defaults.decode,
                            help="wiener: the reference's open-unmix Wiener filter on the stereo mixture (about 0.4 ms "
                                 "a frame on a small CPU); mixture-phase: the mixture's phase on the predicted "
                                 f"magnitude, faster (default {defaults.decode})")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from marblekit.probes.run import ProbeRequest, run_probe
    from marblekit.probes.separation import SeparationSettings

    settings = SeparationSettings(args.lstm_hidden, args.chunk_seconds, args.samples_per_track, args.separation_batch,
                                  args.separation_decode)
    request = ProbeRequest(args.store, args.task, args.data, args.out, args.mode, args.workers, args.seed,
                           args.device, args.max_epochs, tuple(args.learning_rates), settings, args.memory_gb,
                           args.scratch, args.lr_find)
    report = run_probe(request)
    winner = report["winner"]
    print(f"{report['task']}: {len(report['probes'])} probes in {report['train_seconds']} s ({report['mode']}); "
          f"selected {winner['config']['name']} (valid {report['monitor']} {winner['valid'][report['monitor']]:.4f}), "
          f"test score {winner['test']['score']:.4f}; wrote {args.out / 'results.json'}")
    return 0
