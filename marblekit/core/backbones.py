"""Backbone specifications: the small contract every part of marblekit agrees on, and the registry.

A spec is plain data (no torch), so the extractor and the probe trainer can read it without pulling in
the model code. Values follow the published checkpoints' config.json files; the input-normalisation
flags follow the MARBLE v1 reference extraction (``processor_normalize``), which the benchmark numbers
were produced with.

Backbones of other packages join the registry through the ``marblekit.backbones`` entry-point group: each
entry point names a :class:`BackbonePlugin` (its specs, and where its builder, checkpoint importer and default
checkpoint finder live, as ``"module:function"`` references so that reading the registry never imports
torch). ``marblekit export`` resolves them; nothing in marblekit has to be edited to add a model.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from marblekit.core.layers import LayerColumns

log = logging.getLogger(__name__)
#: the entry-point group a package declares its backbones under (pyproject ``[project.entry-points]``)
ENTRY_POINT_GROUP = "marblekit.backbones"


@dataclass(frozen=True)
class BackboneSpec:
    """What a client needs to know to feed a backbone and to interpret its outputs."""

    name: str
    family: str  # the model code: "hubert" | "data2vec-audio" | "handcrafted" | a plugin's own family
    sample_rate: int
    hop: int  # samples between output frames
    receptive_field: int  # samples seen by the first frame
    num_layers: int  # transformer layers; hidden states = num_layers + 1
    dim: int
    heads: int = 0
    ffn: int = 0
    pre_layer_norm: bool = False
    normalize_input: bool = False  # z-normalise each clip before windowing (MARBLE v1 processor_normalize)
    weights: str = ""  # where real weights come from
    description: str = ""
    layer_names: tuple[str, ...] = ()
    centered_frames: bool = False  # frame k is centred on sample k * hop (padded STFT), not starting there
    weights_needed: bool = True  # False: a fixed graph (DSP) with nothing to learn or load
    #: width of each hidden state; empty: every one is ``dim`` wide
    layer_dims: tuple[int, ...] = ()
    #: the hidden states with a frame every ``hop`` samples (None: all); the others (a CNN's coarser blocks,
    #: a per-patch embedding) are stored per window only
    frame_layers: tuple[int, ...] | None = None
    #: the hidden states the weighted-sum probe mixes, all of one width (None: 1..L, as MARBLE mixes a
    #: transformer's layer outputs; empty: the backbone has no states that share one space)
    weighted_layers: tuple[int, ...] | None = None
    frame_block: int = 1  # frames come in whole blocks of this many (musicnn's 187-frame patches)
    #: frame k is centred on sample (k + 1) * hop, as MULE slices its spectrogram: N // hop frames once N
    #: reaches ``receptive_field``
    slice_frames: bool = False

    def __post_init__(self) -> None:
        if self.layer_dims and len(self.layer_dims) != self.num_hidden_states:
            raise ValueError(f"backbone {self.name!r}: layer_dims has {len(self.layer_dims)} widths for "
                             f"{self.num_hidden_states} hidden states")
        states = range(self.num_hidden_states)
        for field_name in ("frame_layers", "weighted_layers"):
            bad = [k for k in getattr(self, field_name) or () if k not in states]
            if bad:
                raise ValueError(f"backbone {self.name!r}: {field_name} {bad} are not hidden states 0..{states[-1]}")
        if len({self.dims[k] for k in self.mixed_layers}) > 1:
            raise ValueError(f"backbone {self.name!r}: the weighted-sum layers {list(self.mixed_layers)} have "
                             f"widths {[self.dims[k] for k in self.mixed_layers]}; they must share one width")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def dims(self) -> tuple[int, ...]:
        """The width of every hidden state."""
        return self.layer_dims or (self.dim,) * self.num_hidden_states

    @property
    def frame_states(self) -> tuple[int, ...]:
        """The hidden states that have frame-level features."""
        return tuple(range(self.num_hidden_states)) if self.frame_layers is None else self.frame_layers

    @property
    def columns(self) -> LayerColumns:
        """Where every hidden state sits in the served ``pooled`` row."""
        return LayerColumns(tuple(range(self.num_hidden_states)), self.dims)

    @property
    def frame_columns(self) -> LayerColumns:
        """Where each frame layer sits in the served ``frames`` rows."""
        return LayerColumns.of(self.frame_states, self.dims)

    @property
    def mixed_layers(self) -> tuple[int, ...]:
        """The hidden states the weighted-sum probe mixes."""
        return tuple(range(1, self.num_hidden_states)) if self.weighted_layers is None else self.weighted_layers

    @property
    def num_hidden_states(self) -> int:
        return self.num_layers + 1

    @property
    def needs_weights(self) -> bool:
        return self.weights_needed

    def num_frames(self, num_samples: int) -> int:
        """Frames the backbone emits for ``num_samples`` of input (0 when the input is too short)."""
        if self.centered_frames:
            frames = num_samples // self.hop + 1 if num_samples > 0 else 0
        elif self.slice_frames:
            frames = num_samples // self.hop if num_samples >= self.receptive_field else 0
        elif num_samples < self.receptive_field:
            frames = 0
        else:
            frames = (num_samples - self.receptive_field) // self.hop + 1
        return frames // self.frame_block * self.frame_block

    def with_layers(self, num_layers: int) -> "BackboneSpec":
        """The same architecture at another depth (tests use shallow copies of the published shapes)."""
        return dataclasses.replace(self, num_layers=num_layers, name=f"{self.name}-{num_layers}l")

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "family": self.family,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "layers": self.num_layers,
            "hidden_states": self.num_hidden_states,
            "dim": self.dim,
            "layer_dims": list(self.dims),
            "frame_layers": list(self.frame_states),
            "weighted_layers": list(self.mixed_layers),
            "normalize_input": self.normalize_input,
            "pre_layer_norm": self.pre_layer_norm,
            "weights": self.weights,
            "description": self.description,
            "layer_names": list(self.layer_names),
        }


def _wav2vec2(name: str, family: str, sample_rate: int, *, large: bool = False, **kw: object) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        family=family,
        sample_rate=sample_rate,
        hop=320,
        receptive_field=400,
        num_layers=24 if large else 12,
        dim=1024 if large else 768,
        heads=16 if large else 12,
        ffn=4096 if large else 3072,
        **kw,  # type: ignore[arg-type]
    )


#: the families whose model code is marblekit's own (export/builders.py); plugins bring others
_BUILT_IN_FAMILIES = ("hubert", "data2vec-audio", "handcrafted")

HANDCRAFTED = BackboneSpec(
    name="handcrafted",
    family="handcrafted",
    sample_rate=16000,
    hop=320,
    receptive_field=2048,
    num_layers=3,
    dim=128,
    weights="none (fixed DSP: log-mel, MFCC, semitone spectrogram, chroma)",
    description="weight-free baseline: 128-band log-mel, 128 MFCCs, 128-semitone log spectrogram, "
    "12-bin chroma (zero-padded to 128) at 50 Hz",
    layer_names=("log-mel", "mfcc", "semitone", "chroma"),
    centered_frames=True,
    weights_needed=False,
)

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        _wav2vec2("mert-v1-95m", "hubert", 24000, normalize_input=True,
                  weights="m-a-p/MERT-v1-95M (HubertModel keys)", description="MERT v1, 95M, post-LN"),
        _wav2vec2("mert-v1-330m", "hubert", 24000, large=True, pre_layer_norm=True, normalize_input=False,
                  weights="m-a-p/MERT-v1-330M (HubertModel keys)",
                  description="MERT v1, 330M, pre-LN; last hidden state after the final LayerNorm"),
        _wav2vec2("mert-v0", "hubert", 16000, normalize_input=True,
                  weights="m-a-p/MERT-v0 (HubertModel keys)", description="MERT v0, 95M, post-LN"),
        _wav2vec2("mert-v0-public", "hubert", 16000, normalize_input=True,
                  weights="m-a-p/MERT-v0-public (HubertModel keys)", description="MERT v0 trained on public data"),
        _wav2vec2("music2vec-v1", "data2vec-audio", 16000, normalize_input=True,
                  weights="m-a-p/music2vec-v1 (Data2VecAudioModel keys)", description="data2vec-audio on music"),
        _wav2vec2("hubert-base", "hubert", 16000, normalize_input=True,
                  weights="facebook/hubert-base-ls960", description="speech HuBERT base (LibriSpeech 960 h)"),
        _wav2vec2("data2vec-audio-base", "data2vec-audio", 16000, normalize_input=True,
                  weights="facebook/data2vec-audio-base", description="speech data2vec-audio base"),
        HANDCRAFTED,
    )
}


@dataclass(frozen=True)
class BackbonePlugin:
    """What a package registers under ``marblekit.backbones``: its specs and, as ``"module:function"``
    references resolved only when a model is built (they may import torch):

    - ``build(spec, seed) -> nn.Module``: the encoder, seeded random weights (or none, for a fixed graph);
      ``forward(waveform [B, N] float32 at spec.sample_rate)`` returns every hidden state, either stacked as
      ``[B, spec.num_hidden_states, T, spec.dim]`` (all of one width and rate) or as a list in hidden-state
      order of ``[B, T_k, spec.dims[k]]``, where T = ``spec.num_frames(N)`` for the ``spec.frame_states``
      and any number of frames (at least one) for the others;
    - ``load_checkpoint(path, spec) -> (nn.Module, sha256)``: the same encoder with the weights of a local
      checkpoint (a file or folder in the plugin's own format) and a checksum of what was read;
    - ``find_checkpoint(spec) -> Path | None`` (optional): a checkpoint that ships with an installed package,
      used when ``marblekit export`` gets neither ``--checkpoint`` nor ``--random-init``.

    ``parity_rtol``: the export's fp32 parity gate for a graph that rounds to float16 inside (0: the absolute
    1e-4 gate only): every layer within this share of its largest value.
    """

    specs: tuple[BackboneSpec, ...]
    build: str
    load_checkpoint: str = ""
    find_checkpoint: str = ""
    parity_rtol: float = 0.0

    def resolve(self, field_name: str) -> Callable:
        """The function a reference field names, with an error that says which plugin and field failed."""
        reference = getattr(self, field_name)
        module_name, _, attribute = reference.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as err:
            raise ImportError(f"backbone plugin of {', '.join(s.name for s in self.specs)}: {field_name} "
                              f"{reference!r} cannot be loaded ({err})") from err


def _plugin_entries() -> list[tuple[str, BackbonePlugin]]:
    """Every installed plugin, by entry-point name; one that fails to load is skipped with a warning naming it
    (a broken third-party package must not take marblekit down)."""
    plugins = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = entry.load()
        except Exception as err:  # noqa: BLE001 - any failure of foreign code: report it, go on
            log.warning("backbone plugin %r (%s) failed to load and is skipped: %s", entry.name, entry.value, err)
            continue
        if not isinstance(plugin, BackbonePlugin):
            log.warning("backbone plugin %r (%s) is a %s, not a marblekit.core.backbones.BackbonePlugin; skipped",
                        entry.name, entry.value, type(plugin).__name__)
            continue
        plugins.append((entry.name, plugin))
    return plugins


@functools.cache
def _registry() -> tuple[dict[str, BackboneSpec], dict[str, BackbonePlugin]]:
    """Specs by name, and plugins by the family of their specs (so variants such as ``with_layers`` copies
    find their plugin too)."""
    specs, owners = dict(BACKBONES), {}
    for entry_name, plugin in _plugin_entries():
        for spec in plugin.specs:
            taken = spec.family in _BUILT_IN_FAMILIES or owners.get(spec.family, plugin) is not plugin
            if spec.name in specs or taken:
                raise ValueError(f"backbone plugin {entry_name!r} registers {spec.name!r} (family "
                                 f"{spec.family!r}), whose name or family is already taken; rename it")
            specs[spec.name] = spec
            owners[spec.family] = plugin
    return specs, owners


def all_backbones() -> dict[str, BackboneSpec]:
    """The built-in backbones and those of every installed plugin, by name."""
    return dict(_registry()[0])


def plugin_for(spec: BackboneSpec) -> BackbonePlugin | None:
    """The plugin that provides ``spec``'s model code (None for the built-in families)."""
    return _registry()[1].get(spec.family)


def get_backbone(name: str) -> BackboneSpec:
    """Look a backbone up by name, with an error that lists the known names."""
    specs = _registry()[0]
    if name not in specs:
        raise ValueError(f"unknown backbone {name!r}; expected one of: {', '.join(sorted(specs))}")
    return specs[name]
