"""Backbone specifications: the small contract every part of marblekit agrees on.

A spec is plain data (no torch), so the extractor and the probe trainer can read it without pulling in
the model code. Values follow the published checkpoints' config.json files; the input-normalisation
flags follow the MARBLE v1 reference extraction (``processor_normalize``), which the benchmark numbers
were produced with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneSpec:
    """What a client needs to know to feed a backbone and to interpret its outputs."""

    name: str
    family: str  # "hubert" | "data2vec-audio" | "handcrafted"
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

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def num_hidden_states(self) -> int:
        return self.num_layers + 1

    @property
    def needs_weights(self) -> bool:
        return self.family != "handcrafted"

    def num_frames(self, num_samples: int) -> int:
        """Frames the backbone emits for ``num_samples`` of input (0 when the input is too short)."""
        if self.family == "handcrafted":
            return num_samples // self.hop + 1 if num_samples > 0 else 0
        if num_samples < self.receptive_field:
            return 0
        return (num_samples - self.receptive_field) // self.hop + 1

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


def get_backbone(name: str) -> BackboneSpec:
    """Look a backbone up by name, with an error that lists the known names."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]
