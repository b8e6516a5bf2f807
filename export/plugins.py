"""The backbones marblekit adds through its own ``marblekit.backbones`` entry point (pyproject.toml), exactly as a
user's package would: MusiCNN (the trained MTT and MSD checkpoints of the ``musicnn`` wheel), CLMR and MULE.

This module holds only specs and references, no torch: reading the registry imports it, and the extractor
reads the registry too. The model code is in ``musicnn.py`` and ``clmr.py``.

The weighted-sum probe mixes hidden states that live in one space: a transformer's layer outputs (MARBLE's
rule), MusiCNN's mid-end ``cnn1..cnn3`` (each adds its output to the previous one, a residual stream of 64
channels). SampleCNN's blocks and MULE's stages change width at every stage with nothing carried over, so CLMR
and MULE have no weighted sum: their grid is every layer alone.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from marblekit.core.backbones import BackbonePlugin, BackboneSpec

#: MusiCNN's named representations in the order ``musicnn.extractor`` lists them: per frame, then per patch
MUSICNN_FRAME_FEATURES = {"timbral": 408, "temporal": 153, "cnn1": 64, "cnn2": 64, "cnn3": 64}
MUSICNN_PATCH_FEATURES = {"mean_pool": 753, "max_pool": 753, "penultimate": 200, "taggram": 50}
MUSICNN_PATCH_FRAMES, MUSICNN_HOP = 187, 256
MUSICNN_CHECKPOINTS = {"musicnn-mtt": "MTT_musicnn", "musicnn-msd": "MSD_musicnn"}

#: (in, out) channels of SampleCNN's nine pooling blocks, as CLMR's ``SampleCNN.hidden``
CLMR_HIDDEN = ((128, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 256), (256, 256), (256, 256),
               (256, 512))
#: name, width and samples per frame of every block's output
CLMR_BLOCKS = tuple([("block0", 128, 3)]
                    + [(f"block{index + 1}", out, 3 ** (index + 2)) for index, (_, out) in enumerate(CLMR_HIDDEN)]
                    + [("block10", 512, 3 ** 10)])
CLMR_SAMPLE_RATE, CLMR_INPUT_SAMPLES = 22050, 3 ** 10


def _musicnn(name: str, dataset: str) -> BackboneSpec:
    names = (*MUSICNN_FRAME_FEATURES, *MUSICNN_PATCH_FEATURES)
    dims = (*MUSICNN_FRAME_FEATURES.values(), *MUSICNN_PATCH_FEATURES.values())
    return BackboneSpec(
        name=name, family="musicnn", sample_rate=16000, hop=MUSICNN_HOP,
        receptive_field=(MUSICNN_PATCH_FRAMES - 1) * MUSICNN_HOP, num_layers=len(names) - 1, dim=max(dims),
        layer_dims=dims, layer_names=names, frame_layers=tuple(range(len(MUSICNN_FRAME_FEATURES))),
        weighted_layers=tuple(names.index(f"cnn{k}") for k in (1, 2, 3)), frame_block=MUSICNN_PATCH_FRAMES,
        centered_frames=True,
        weights=f"{MUSICNN_CHECKPOINTS[name]} of the installed musicnn 0.1.0 wheel (trained on {dataset}), found "
        f"by itself; --checkpoint DIR for a copy",
        description=f"MusiCNN (Pons & Serra 2019) trained on {dataset}: mel front end in the graph, named "
        f"representations per 62.5 Hz frame and per 3 s patch",
    )


MUSICNN_SPECS = (_musicnn("musicnn-mtt", "MagnaTagATune"), _musicnn("musicnn-msd", "the Million Song Dataset"))
MUSICNN = BackbonePlugin(specs=MUSICNN_SPECS, build="marblekit.export.musicnn:build",
                         load_checkpoint="marblekit.export.musicnn:load_checkpoint",
                         find_checkpoint="marblekit.export.plugins:find_musicnn_checkpoint",
                         parity_rtol=5e-3)  # float16 front end: 1.35e-3 measured on the export's noise inputs

CLMR_SPEC = BackboneSpec(
    name="clmr", family="clmr", sample_rate=CLMR_SAMPLE_RATE, hop=CLMR_INPUT_SAMPLES,
    receptive_field=CLMR_INPUT_SAMPLES, num_layers=len(CLMR_BLOCKS) - 1, dim=512,
    layer_dims=tuple(width for _, width, _ in CLMR_BLOCKS), layer_names=tuple(name for name, _, _ in CLMR_BLOCKS),
    frame_layers=tuple(k for k, (_, _, hop) in enumerate(CLMR_BLOCKS) if hop == CLMR_INPUT_SAMPLES),
    weighted_layers=(),
    weights="a CLMR training checkpoint (--checkpoint FILE: PyTorch-Lightning .ckpt or encoder state dict); none "
    "can be downloaded here",
    description="CLMR SampleCNN (Spijkervet & Burgoyne 2021) on the raw 22.05 kHz waveform, one frame per 59049 "
    "samples; every block's output",
)
CLMR = BackbonePlugin(specs=(CLMR_SPEC,), build="marblekit.export.clmr:build",
                      load_checkpoint="marblekit.export.clmr:load_checkpoint")


#: MULE's named representations (export/mule.py's STATES): each stem's and stage's output of the slow and the
#: fast path averaged over its 3 s slice, then the 1728-d embedding
MULE_STATES = {"slow_stem": 128, "fast_stem": 16, "slow_stage1": 256, "fast_stage1": 32, "slow_stage2": 512,
               "fast_stage2": 64, "slow_stage3": 1536, "fast_stage3": 192, "slow_stage4": 1536, "fast_stage4": 192,
               "embedding": 1728}
MULE_SLICE_HOP, MULE_MIN_SAMPLES = 32000, 47840  # a 300-frame slice every 200 mel frames of hop 160
MULE_SPEC = BackboneSpec(
    name="mule", family="mule", sample_rate=16000, hop=MULE_SLICE_HOP, receptive_field=MULE_MIN_SAMPLES,
    num_layers=len(MULE_STATES) - 1, dim=1728, layer_dims=tuple(MULE_STATES.values()),
    layer_names=tuple(MULE_STATES), slice_frames=True, weighted_layers=(),
    weights="MULE's released model.keras (--checkpoint FILE; PandoraMedia/music-audio-representations, Git LFS); "
    "none can be downloaded here",
    description="MULE (McCallum et al. 2022): SF-NFNet-F0 on a 96-band log-mel, one frame per 2 s slice; every "
    "stage of both paths and the 1728-d embedding",
)
MULE = BackbonePlugin(specs=(MULE_SPEC,), build="marblekit.export.mule:build",
                      load_checkpoint="marblekit.export.mule:load_checkpoint")


def find_musicnn_checkpoint(spec: BackboneSpec) -> Path | None:
    """The checkpoint folder of ``spec`` inside the installed ``musicnn`` package (found, not imported: no
    TensorFlow until it is read), or None without the package."""
    found = importlib.util.find_spec("musicnn")
    if found is None or found.origin is None:
        return None
    folder = Path(found.origin).parent / MUSICNN_CHECKPOINTS[spec.name]
    return folder if folder.is_dir() else None


def musicnn_unavailable(spec: BackboneSpec) -> str | None:
    """Why ``spec``'s trained MusiCNN cannot be exported here (None when it can): the musicnn wheel and
    TensorFlow, which reads its checkpoint, must be installed (scripts/install.sh installs both)."""
    if find_musicnn_checkpoint(spec) is None:
        return "the musicnn wheel is not installed (pip install --no-deps musicnn==0.1.0)"
    if importlib.util.find_spec("tensorflow") is None:
        return "TensorFlow is not installed (pip install 'marblekit[tensorflow]')"
    return None
