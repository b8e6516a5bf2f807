"""Checkpoint importer: a local HF-format directory -> a ``HiddenStatesEncoder`` with its weights.

Accepts ``config.json`` plus ``model.safetensors`` (optionally sharded with an index) or
``pytorch_model.bin`` (read with ``torch.load(weights_only=True)``: tensors only, never arbitrary pickles).
Both weight-norm spellings (``weight_g``/``weight_v`` and ``parametrizations.weight.original0/1``) are folded
into one plain weight at load time. Every failure names the file and the key.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from marblekit.core.backbones import BackboneSpec
from marblekit.core.checksums import sha256_of

from .architecture import HiddenStatesEncoder
from .builders import MODEL_CLASSES, base_model

log = logging.getLogger(__name__)

#: config.json ``model_type`` values -> our family. MERT's own type is a HuBERT with extra (unused) keys.
ARCHITECTURES = {"hubert": "hubert", "mert_model": "hubert", "data2vec-audio": "data2vec-audio"}
#: Training-only MERT options that change the graph; published checkpoints all have them off.
UNSUPPORTED_WHEN_SET = ("feature_extractor_cqt", "deepnorm")
#: Prefixes task heads put in front of the base model's keys.
BASE_PREFIXES = ("hubert.", "data2vec_audio.", "model.")
#: Keys a checkpoint may lack without harm at inference.
OPTIONAL_KEYS = {"masked_spec_embed"}
WEIGHT_NORM_SPELLINGS = ((".weight_g", ".weight_v"),
                         (".parametrizations.weight.original0", ".parametrizations.weight.original1"))


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded; the message names the file and key."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    encoder: HiddenStatesEncoder
    family: str
    weights_files: tuple[Path, ...]
    sha256: str


def read_hf_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist or is not a directory")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a checkpoint directory needs config.json and its weights")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def architecture_family(config: dict, path: Path) -> str:
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise CheckpointError(f"{path}: key 'model_type' is {model_type!r}; expected one of "
                              f"{', '.join(sorted(ARCHITECTURES))}")
    for key in UNSUPPORTED_WHEN_SET:
        if config.get(key):
            raise CheckpointError(f"{path}: key {key!r} is set; marblekit supports the published checkpoints, "
                                  f"which all have it false")
    return ARCHITECTURES[model_type]


def check_against_spec(config: dict, spec: BackboneSpec, family: str, path: Path) -> None:
    """Refuse a checkpoint whose shape is not the one the user named."""
    if family != spec.family:
        raise CheckpointError(f"{path}: architecture {family!r} does not match backbone {spec.name!r} "
                              f"({spec.family!r})")
    expected = {"hidden_size": spec.dim, "num_hidden_layers": spec.num_layers,
                "num_attention_heads": spec.heads, "intermediate_size": spec.ffn}
    if family == "hubert":
        expected["do_stable_layer_norm"] = spec.pre_layer_norm
    for key, value in expected.items():
        if key in config and config[key] != value:
            raise CheckpointError(f"{path}: key {key!r} is {config[key]!r}; backbone {spec.name!r} expects {value!r}")


def weights_files(directory: Path) -> tuple[Path, ...]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"{index}: expected JSON with a 'weight_map' object ({err})") from err
        return tuple(directory / name for name in sorted(set(weight_map.values())))
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).is_file():
            return (directory / name,)
    raise CheckpointError(f"{directory}: no weights; expected model.safetensors, model.safetensors.index.json "
                          f"or pytorch_model.bin")


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (listed in the checkpoint's index)")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the readers raise many types for truncated or foreign files
        raise CheckpointError(f"{path}: cannot read weights ({type(err).__name__}: {err})") from err
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise CheckpointError(f"{path}: expected a flat mapping of names to tensors")
    return tensors


def fold_weight_norm_keys(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Replace each (g, v) weight-norm pair by ``weight = g * v / ||v||`` (norm over the axes where g is 1)."""
    folded = dict(tensors)
    for g_suffix, v_suffix in WEIGHT_NORM_SPELLINGS:
        for key in [k for k in tensors if k.endswith(g_suffix)]:
            stem = key[: -len(g_suffix)]
            if stem + v_suffix not in tensors:
                raise CheckpointError(f"{path}: key {key!r} has no partner {stem + v_suffix!r}")
            g, v = folded.pop(key), folded.pop(stem + v_suffix)
            if g.ndim != v.ndim:
                raise CheckpointError(f"{path}: key {key!r} has shape {tuple(g.shape)}, incompatible with "
                                      f"{stem + v_suffix!r} {tuple(v.shape)}")
            kept_axes = [axis for axis in range(g.ndim) if g.shape[axis] != 1] or [0]
            # torch's own kernel, so the folded weight is bit-identical to what the parametrisation computes
            folded[stem + ".weight"] = torch._weight_norm(v, g, kept_axes[0])
    return folded


def strip_base_prefix(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in BASE_PREFIXES:
        if any(k.startswith(prefix + "encoder.") for k in tensors):
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return tensors


def load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load ``tensors`` into ``model``, naming the first missing key or wrong shape; batch-norm step counters
    and keys marked optional may be absent, keys the model does not use are ignored with a warning."""
    expected = model.state_dict()
    missing = sorted(key for key in set(expected) - set(tensors) - OPTIONAL_KEYS
                     if not key.endswith("num_batches_tracked"))
    if missing:
        shown = ", ".join(repr(k) for k in missing[:5])
        raise CheckpointError(f"{source}: missing {len(missing)} key(s), e.g. {shown}")
    for key, tensor in tensors.items():
        if key in expected and tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{source}: key {key!r} has shape {tuple(tensor.shape)}; "
                                  f"the model expects {tuple(expected[key].shape)}")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        log.warning("%s: ignoring %d key(s) the model does not use, e.g. %s", source, len(unexpected),
                    unexpected[:3])
    model.load_state_dict({k: v for k, v in tensors.items() if k in expected}, strict=False)


def load_checkpoint(directory: Path, spec: BackboneSpec) -> LoadedCheckpoint:
    """Load ``directory`` as backbone ``spec``; raises ``CheckpointError`` naming the file and key."""
    directory = Path(directory)
    raw = read_hf_config(directory)
    config_path = directory / "config.json"
    family = architecture_family(raw, config_path)
    check_against_spec(raw, spec, family, config_path)
    config_class, _ = MODEL_CLASSES[family]
    settings = {k: v for k, v in raw.items() if k not in ("model_type", "auto_map", "architectures")}
    try:
        config = config_class(**settings)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{config_path}: not a valid {config_class.__name__} ({err})") from err
    config._attn_implementation = "eager"
    files = weights_files(directory)
    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        tensors.update(fold_weight_norm_keys(read_tensors(path), path))
    model = base_model(spec, config)
    load_state(model, strip_base_prefix(tensors), ", ".join(str(p) for p in files))
    pre_layer_norm = bool(raw.get("do_stable_layer_norm", False)) and family == "hubert"
    return LoadedCheckpoint(HiddenStatesEncoder(model, pre_layer_norm), family, files, sha256_of(*files))
