"""Builders: a spec (published shape) -> a transformers config and a model, random-init or from weights.

Every MERT checkpoint is exactly a ``HubertModel`` (same keys, same numerics), music2vec is a
``Data2VecAudioModel``; nothing here needs ``trust_remote_code``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from transformers import Data2VecAudioConfig, Data2VecAudioModel, HubertConfig, HubertModel, PretrainedConfig

from marblekit.core.backbones import BackboneSpec

from .architecture import HiddenStatesEncoder
from .handcrafted import HandcraftedFeatures

MODEL_CLASSES: dict[str, tuple[type[PretrainedConfig], type[nn.Module]]] = {
    "hubert": (HubertConfig, HubertModel),
    "data2vec-audio": (Data2VecAudioConfig, Data2VecAudioModel),
}


def transformers_config(spec: BackboneSpec) -> PretrainedConfig:
    """The published configuration of ``spec`` (eval-time values; dropouts do not matter in eval)."""
    config_class, _ = MODEL_CLASSES[spec.family]
    kwargs: dict[str, object] = dict(
        hidden_size=spec.dim,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.heads,
        intermediate_size=spec.ffn,
        layer_norm_eps=1e-5,
    )
    if spec.family == "hubert":
        kwargs.update(feat_extract_norm="group", do_stable_layer_norm=spec.pre_layer_norm,
                      feat_proj_layer_norm=True, conv_bias=False)
    config = config_class(**kwargs)
    config._attn_implementation = "eager"
    return config


def fold_weight_norm(model: nn.Module) -> nn.Module:
    """Replace weight-norm parametrisations by the plain weight they compute (exact; exports cleanly)."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def base_model(spec: BackboneSpec, config: PretrainedConfig | None = None) -> nn.Module:
    """A randomly initialised transformers base model of ``spec``'s shape (weight norm folded)."""
    _, model_class = MODEL_CLASSES[spec.family]
    model = model_class(config or transformers_config(spec))
    return fold_weight_norm(model).eval()


def random_encoder(spec: BackboneSpec, seed: int) -> nn.Module:
    """The hidden-state encoder of ``spec`` with seeded random weights (or the weight-free handcrafted one)."""
    if spec.family == "handcrafted":
        return HandcraftedFeatures(spec)
    torch.manual_seed(seed)
    return HiddenStatesEncoder(base_model(spec), spec.pre_layer_norm)
