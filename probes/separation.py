"""Separation probing: a mask head (``separation_head``) per grid point and target stem, trained one after
another. Each model is an LSTM over thousands of frames, too large to stack like the MLP grid, so the grid
over layer choices x learning rates runs sequentially (cost: stems x layer choices x learning rates
models; restrict ``--learning-rates`` and shrink ``SeparationSettings`` for quick CPU runs).

Training follows MARBLE's MUSDB18 prober on pre-extracted features: random chunks of ``chunk_s`` seconds
of the real tracks, ``samples_per_track`` per train track and epoch (the reference's random track
remixing, gains and channel swaps would need the backbone on the fly and are left out), batches of
``batch_size`` chunks, MSE between predicted and target magnitude spectrograms (the channel mean of the
stereo channels' magnitudes, as open-unmix's mono ComplexNorm), Adam without weight decay, ReduceLROnPlateau
(factor 0.5) and early stopping on the validation SDR, best-validation state kept. Validation and test run
whole tracks. Decoding (``decode``) is the reference's: open-unmix's Wiener filter, one EM iteration with a
residual source, on the stereo mixture (``marblekit.probes.wiener``), or, as a faster named option, the
mixture's phase on the predicted magnitude; each track is scored with the global SDR of its stereo estimate and
the tracks are averaged.

A grid point's metrics are ``sdr_<stem>`` per stem and ``sdr``, their mean. The winner is chosen per stem, as
the reference runs each target on its own (``per_stem_winner``): every stem's model of the grid point best on
that stem's validation SDR; the task score is the mean of those models' test SDRs.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marblekit.probes.metrics import global_sdr
from marblekit.probes.separation_data import SeparationData, Track
from marblekit.probes.types import ProbeConfig, ProbeResult

MONITOR = "sdr"
#: the reference's open-unmix Wiener filter, or the mixture's phase on the predicted magnitude (faster)
DECODERS = ("wiener", "mixture-phase")


@dataclass(frozen=True)
class SeparationSettings:
    """Model and data sizes; the defaults are the reference's (batch 32 from its launcher). ``decode``: one of
    ``DECODERS``."""

    hidden: int = 512
    chunk_s: float = 6.0
    samples_per_track: int = 64
    batch_size: int = 32
    decode: str = "wiener"

    def __post_init__(self) -> None:
        if self.decode not in DECODERS:
            raise ValueError(f"--separation-decode must be one of {', '.join(DECODERS)}, got {self.decode!r}")


@dataclass
class StemRun:
    """One stem model's run: curves, best epoch and global SDR at its best-validation state."""

    epochs: int
    best_epoch: int
    valid_curve: list[float]
    train_loss: list[float]
    final_lr: float
    valid_sdr: float
    test_sdr: float


@dataclass
class SeparationResult(ProbeResult):
    """A grid point's result; ``stems`` holds each stem model's run. The shared fields summarise them:
    epochs and best epoch are the latest over the stems, the final learning rate the smallest, the
    validation curve is the per-epoch mean over stems of each model's best SDR so far (a stopped model
    keeps its best), the train loss the mean over the models still training."""

    stems: dict[str, dict[str, Any]] = field(default_factory=dict)


def input_layers(config: ProbeConfig, mixed_layers: tuple[int, ...]) -> np.ndarray:
    """Hidden states a probe reads: its layer, or the weighted sum's layers."""
    return np.array([config.layer]) if config.layer is not None else np.array(mixed_layers)


def chunk_frames(data: SeparationData, settings: SeparationSettings) -> int:
    """Frames per training chunk: ``chunk_s`` at the frame rate, at most the shortest train track."""
    rate = data.sample_rate / data.spectrogram.hop
    return min(max(1, round(settings.chunk_s * rate)), min(t.n_frames for t in data.splits["train"]))


class StemTrainer:
    """Trains and scores one mask head for one stem and grid point."""

    def __init__(self, data: SeparationData, stem_waves: dict[str, list[np.ndarray]], config: ProbeConfig,
                 settings: SeparationSettings, seed: int, device: str) -> None:
        import torch

        from marblekit.probes.separation_head import MaskHead

        self.data, self.waves, self.settings, self.seed = data, stem_waves, settings, seed
        self.device = torch.device(device)
        self.layers = input_layers(config, data.mixed_layers)
        torch.manual_seed(seed)
        self.model = MaskHead(data.features.width(self.layers), data.spectrogram.n_bins, len(self.layers),
                              settings.hidden).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=0.0)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=0.5, patience=data.schedule.plateau_patience)
        self.chunk = chunk_frames(data, settings)

    def _batch(self, picks: list[tuple[int, int]]) -> tuple[Any, Any, Any]:
        """Features [C, B, K, D], mixture and target magnitudes [C, B, bins] of (track, start frame) chunks."""
        import torch

        spec, tracks = self.data.spectrogram, self.data.splits["train"]
        span = (self.chunk - 1) * spec.hop + spec.n_fft
        features = np.stack([self.data.track_features(tracks[t], self.layers, s, self.chunk) for t, s in picks], 1)
        mixture = np.stack([tracks[t].mixture[:, s * spec.hop:s * spec.hop + span] for t, s in picks])
        target = np.stack([self.waves["train"][t][:, s * spec.hop:s * spec.hop + span] for t, s in picks])
        as_tensor = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        return as_tensor(features), spec.magnitude(as_tensor(mixture)), spec.magnitude(as_tensor(target))

    def train_epoch(self, rng: np.random.Generator) -> float:
        """One pass over ``samples_per_track`` random chunks of every train track; the mean batch loss."""
        import torch.nn.functional as F

        tracks = self.data.splits["train"]
        picks = [(t, int(rng.integers(0, track.n_frames - self.chunk + 1)))
                 for t, track in enumerate(tracks) for _ in range(self.settings.samples_per_track)]
        order = rng.permutation(len(picks))
        self.model.train()
        losses = []
        for start in range(0, len(order), self.settings.batch_size):
            features, mixture, target = self._batch([picks[i] for i in order[start:start + self.settings.batch_size]])
            loss = F.mse_loss(self.model(features, mixture), target)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses))

    def separate(self, track: Track) -> np.ndarray:
        """The stereo stem estimate [2, samples] of a whole track: the predicted magnitude, decoded."""
        import torch

        spec = self.data.spectrogram
        self.model.eval()
        with torch.no_grad():
            features = torch.from_numpy(self.data.track_features(track, self.layers)[:, None]).to(self.device)
            mixture = spec.complex(torch.from_numpy(track.mixture[None]).to(self.device))  # [frames, 1, C, bins]
            magnitude = self.model(features, spec.channel_mean(mixture))  # [frames, 1, bins]
            target = decode(magnitude[:, 0], mixture[:, 0], self.settings.decode)
            estimate = spec.inverse(target[:, None], track.n_samples)
        return estimate[0].cpu().numpy()

    def score(self, split: str) -> float:
        """Mean global SDR over the split's tracks."""
        offset = self.data.spectrogram.n_fft // 2
        return float(np.mean([global_sdr(wave[:, offset:offset + track.n_samples], self.separate(track))
                              for track, wave in zip(self.data.splits[split], self.waves[split], strict=True)]))

    def run(self) -> StemRun:
        """Train with plateau schedule and early stopping on validation SDR; score the best state."""
        rng = np.random.default_rng(self.seed)
        schedule = self.data.schedule
        best, best_epoch, best_state, wait = -math.inf, 0, copy.deepcopy(self.model.state_dict()), 0
        curve, losses = [], []
        for epoch in range(1, schedule.max_epochs + 1):
            losses.append(self.train_epoch(rng))
            sdr = self.score("valid")
            curve.append(sdr)
            self.scheduler.step(sdr)
            if sdr > best:
                best, best_epoch, best_state, wait = sdr, epoch, copy.deepcopy(self.model.state_dict()), 0
            else:
                wait += 1
                if wait >= schedule.stop_patience:
                    break
        final_lr = self.optimizer.param_groups[0]["lr"]
        self.model.load_state_dict(best_state)
        return StemRun(len(curve), best_epoch, curve, losses, final_lr, self.score("valid"), self.score("test"))


def decode(magnitude: Any, mixture: Any, how: str) -> Any:
    """A target's complex STFT [frames, C, bins] from its magnitude [frames, bins] and the mixture's STFT."""
    import torch

    from marblekit.probes import wiener  # norbert and scipy: only when decoding

    if how == "mixture-phase":
        return torch.polar(magnitude[:, None].expand(mixture.shape).contiguous(), mixture.angle())
    target = wiener.separate(magnitude.cpu().numpy(), mixture.permute(0, 2, 1).cpu().numpy())
    return torch.from_numpy(target).permute(0, 2, 1).to(mixture.device)


def summarise(config: ProbeConfig, runs: dict[str, StemRun]) -> SeparationResult:
    """One grid point's result from its stem models (see ``SeparationResult``)."""
    epochs = max(r.epochs for r in runs.values())
    best_so_far = [np.maximum.accumulate(r.valid_curve) for r in runs.values()]
    curve = [float(np.mean([b[min(e, len(b) - 1)] for b in best_so_far])) for e in range(epochs)]
    loss = [float(np.mean([r.train_loss[e] for r in runs.values() if e < len(r.train_loss)])) for e in range(epochs)]
    valid = _with_mean({f"sdr_{s}": r.valid_sdr for s, r in runs.items()})
    test = _with_mean({f"sdr_{s}": r.test_sdr for s, r in runs.items()})
    return SeparationResult(config=config, epochs=epochs, best_epoch=max(r.best_epoch for r in runs.values()),
                            valid_curve=curve, train_loss=loss, final_lr=min(r.final_lr for r in runs.values()),
                            valid=valid, test=test, stems={s: vars(r) for s, r in runs.items()})


def _with_mean(sdrs: dict[str, float]) -> dict[str, float]:
    """Per-stem ``sdr_<stem>`` plus ``sdr`` and ``score``, their mean."""
    mean = float(np.mean(list(sdrs.values())))
    return {**sdrs, MONITOR: mean, "score": mean}


def per_stem_winner(results: list[SeparationResult]) -> dict[str, Any]:
    """The reference's selection: for each stem the grid point whose model of that stem has the best
    validation SDR (ties to the earliest in grid order). ``per_stem`` maps each stem to its grid index,
    ``stems`` holds the chosen runs with their configurations, ``valid``/``test`` their SDRs and means."""
    picks = {stem: int(np.argmax([r.stems[stem]["valid_sdr"] for r in results])) for stem in results[0].stems}
    chosen = {stem: (results[i].config, results[i].stems[stem]) for stem, i in picks.items()}
    return {
        "index": None, "per_stem": picks,
        "config": {"layer": None, "lr": None, "name": "; ".join(f"{s}: {c.name}" for s, (c, _) in chosen.items())},
        "valid": _with_mean({f"sdr_{s}": run["valid_sdr"] for s, (_, run) in chosen.items()}),
        "test": _with_mean({f"sdr_{s}": run["test_sdr"] for s, (_, run) in chosen.items()}),
        "stems": {s: {**run, "config": {"layer": c.layer, "lr": c.lr, "name": c.name}}
                  for s, (c, run) in chosen.items()},
    }


def run_separation_grid(data: SeparationData, configs: list[ProbeConfig], settings: SeparationSettings, seed: int,
                        device: str | None = None, progress: bool = True) -> list[SeparationResult]:
    """Every (stem, grid point) model in turn, stem by stem so that one stem's audio is in memory at a
    time; results in ``configs`` order."""
    import torch
    from tqdm import tqdm

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    runs: list[dict[str, StemRun]] = [{} for _ in configs]
    with tqdm(total=len(configs) * len(data.stems), desc="separation models", disable=not progress) as bar:
        for stem in data.stems:
            waves = {split: [data.stem(track, stem) for track in tracks] for split, tracks in data.splits.items()}
            for i, config in enumerate(configs):
                bar.set_postfix(stem=stem, probe=config.name)
                runs[i][stem] = StemTrainer(data, waves, config, settings, seed, device).run()
                bar.update(1)
    return [summarise(config, stem_runs) for config, stem_runs in zip(configs, runs, strict=True)]
