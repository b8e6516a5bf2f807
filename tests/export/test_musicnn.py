"""MusiCNN with the trained MTT weights of the ``musicnn`` wheel, against the original implementation its authors
wrote (``musicnn.extractor`` on TensorFlow) on the same audio: every named representation and the taggram, from
the PyTorch port per patch and from the graph ``marblekit export musicnn-mtt`` writes (front end inside; its
``frames`` are the frame-level features side by side, its ``pooled`` every feature's mean over the input).
Needs the ``tensorflow`` extra and the ``musicnn`` wheel, which ``scripts/install.sh`` installs; skipped
without them.

Tolerance: max |ours - original| <= 1e-3 x max |original|, per feature, wherever the original is finite (the
float16 front end is reproduced step by step; what is left is the DFT-by-convolution's float32 rounding, which
flips a float16 rounding now and then). Measured on the clips below (PyTorch port): taggram 1.1e-5,
penultimate 1.0e-5, mean/max pool 1.5e-5 / 4.9e-5, timbral 5.4e-5, temporal 6.7e-4, cnn1-3 <= 1.3e-4. Loud
input, which overflows the original's float16 front end to inf, stays finite here.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from marblekit.core.backbones import get_backbone
from marblekit.export.musicnn import VGG_FEATURES, load_musicnn, load_tensorflow_checkpoint
from marblekit.export.pipeline import export_model
from marblekit.export.plugins import MUSICNN_FRAME_FEATURES as FRAME_FEATURES
from marblekit.export.plugins import MUSICNN_PATCH_FEATURES as PATCH_FEATURES

MUSICNN = importlib.util.find_spec("musicnn")  # found, not imported: TensorFlow loads only when these tests run
pytestmark = [
    pytest.mark.skipif(MUSICNN is None, reason="the musicnn wheel (scripts/install.sh installs it with --no-deps)"),
    pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                       reason="the tensorflow extra (pip install 'marblekit[tensorflow]')"),
]
NAMES = (*FRAME_FEATURES, *PATCH_FEATURES)
CHECKPOINT = Path(MUSICNN.origin).parent / "MTT_musicnn" if MUSICNN else Path()
STALE = ("cnn1", "cnn2", "cnn3", "penultimate")  # musicnn 0.1.0 repeats the first patch's values for these


def original(path: Path, model: str = "MTT_musicnn") -> dict[str, np.ndarray]:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from musicnn.extractor import extractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        taggram, _, features = extractor(str(path), model=model, input_length=3, input_overlap=False,
                                         extract_features=True)
    return {name: np.asarray(value, np.float32) for name, value in {**features, "taggram": taggram}.items()}


def clip(path: Path, seconds: float, amplitude: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    audio = amplitude * (np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.5 * np.sin(2 * np.pi * 1330 * t)
                         + 0.3 * rng.standard_normal(t.size))
    sf.write(path, audio.astype(np.float32), 16000, subtype="FLOAT")
    return audio.astype(np.float32)


@pytest.fixture(scope="module")
def ported(tmp_path_factory: pytest.TempPathFactory):
    """The port with the MTT weights, and an onnxruntime session of what ``marblekit export musicnn-mtt``
    writes with no other argument (the checkpoint found in the installed wheel)."""
    import onnxruntime as ort

    model, sha256 = load_tensorflow_checkpoint(CHECKPOINT)
    report = export_model(get_backbone("musicnn-mtt"), tmp_path_factory.mktemp("repo"))
    assert report.parity_ok and report.provenance["checkpoint"] == str(CHECKPOINT), report.summary()
    assert report.provenance["checkpoint_sha256"] == sha256
    session = ort.InferenceSession(str(report.model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    return model, session, sha256


def exported(session, audio: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The exported graph's ``frames`` and ``pooled`` of one clip, split into the named features."""
    spec = get_backbone("musicnn-mtt")
    frames, pooled = session.run(["frames", "pooled"], {"waveform": audio[None]})
    columns = spec.columns
    per_frame = dict(zip(FRAME_FEATURES, columns.select(spec.frame_states).split(frames[0])))
    return per_frame, dict(zip(NAMES, columns.split(pooled[0])))


def _agreement(ours: np.ndarray, theirs: np.ndarray) -> float:
    finite = np.isfinite(theirs)
    return float(np.abs(ours - theirs)[finite].max() / max(np.abs(theirs[finite]).max(), 1e-6))


@pytest.mark.parametrize("seconds, amplitude", [(10.0, 0.02), (7.3, 0.08), (3.5, 0.004), (6.0, 0.0)],
                         ids=["quiet-10s", "louder-7.3s", "very-quiet-3.5s", "silence-6s"])
def test_every_feature_equals_the_original(ported, tmp_path: Path, seconds: float, amplitude: float) -> None:
    model, session, sha256 = ported
    audio = clip(tmp_path / "clip.wav", seconds, amplitude, seed=int(seconds * 10))
    reference = original(tmp_path / "clip.wav")
    with torch.no_grad():
        torch_out = {name: value[0].numpy() for name, value in model(torch.from_numpy(audio)[None]).items()}
    frames, pooled = exported(session, audio)
    patches = len(reference["taggram"])
    assert patches == int((len(audio) // 256 + 1) // 187) and len(sha256) == 64
    for name in NAMES:
        theirs = reference[name]
        assert np.isfinite(theirs).all()
        if name not in STALE:
            assert _agreement(pooled[name], theirs.mean(axis=0)) <= 1e-3, (name, "pooled")
        if name in STALE:  # compare the first patch, the only one the original computes right
            theirs = theirs[:187 if name in FRAME_FEATURES else 1]
        for ours in (torch_out[name], *([frames[name]] if name in FRAME_FEATURES else [])):
            ours = ours[:len(theirs)]
            assert ours.shape == theirs.shape, name
            assert _agreement(ours, theirs) <= 1e-3, (name, _agreement(ours, theirs))


def test_loud_input_stays_finite_where_the_original_overflows(ported, tmp_path: Path) -> None:
    _, session, _ = ported
    audio = clip(tmp_path / "loud.wav", 6.0, 0.5, seed=3)
    reference = original(tmp_path / "loud.wav")
    assert not np.isfinite(reference["timbral"]).all(), "expected the original's float16 overflow"
    assert all(np.isfinite(output).all() for output in session.run(None, {"waveform": audio[None]}))


def test_the_taggram_hears_piano_and_drums(ported) -> None:
    """Independent knowledge: rendered piano chords rank MTT's 'piano' above 'drums', a drum kit the reverse."""
    import soxr

    from marblekit.synth.arrangement import beat_grid, chord_part, drum_part, make_song
    from marblekit.synth.fluid import SAMPLE_RATE, Renderer, SynthToolMissing

    try:
        renderer = Renderer.locate()
    except SynthToolMissing as err:
        pytest.skip(str(err))
    from musicnn.configuration import MTT_LABELS

    piano, drums = MTT_LABELS.index("piano"), MTT_LABELS.index("drums")
    grand_piano = 0  # General MIDI program 1
    model = ported[0]
    for seed in range(3):
        rng = np.random.default_rng(seed)
        song = make_song(rng, int(rng.integers(12)), bool(seed % 2), beat_grid(rng, 9.0, 100.0, 0.0))
        for part, louder, quieter in ((chord_part(rng, song, grand_piano), piano, drums),
                                      (drum_part(rng, song), drums, piano)):
            audio = soxr.resample(renderer.render([part], 9.0), SAMPLE_RATE, 16000)
            audio = (0.1 * audio / np.abs(audio).max()).astype(np.float32)
            with torch.no_grad():
                tags = model(torch.from_numpy(audio)[None])["taggram"][0].mean(dim=0).numpy()
            assert tags[louder] > tags[quieter], (seed, MTT_LABELS[louder], tags[louder], tags[quieter])


def test_the_vgg_baseline_equals_the_original(tmp_path: Path) -> None:
    """MTT_vgg (the wheel's extractor refuses MSD_vgg, so only MTT_vgg has a reference to meet). Measured:
    pool1..pool5 6.7e-4 / 4.5e-4 / 2.7e-4 / 7.9e-5 / 4.5e-5, taggram 4.7e-6."""
    model, _ = load_tensorflow_checkpoint(CHECKPOINT.with_name("MTT_vgg"))
    with pytest.raises(ValueError, match="holds musicnn's VGG baseline, not MusiCNN"):  # not as musicnn-mtt
        load_musicnn(CHECKPOINT.with_name("MTT_vgg"))
    audio = clip(tmp_path / "clip.wav", 7.0, 0.03, seed=5)
    reference = original(tmp_path / "clip.wav", "MTT_vgg")
    with torch.no_grad():
        ours = {name: value[0].numpy() for name, value in model(torch.from_numpy(audio)[None]).items()}
    assert [ours[name].shape[1:] for name in VGG_FEATURES] == [(48, 128), (24, 128), (12, 128), (6, 128), (1, 128)]
    for name in (*VGG_FEATURES, "taggram"):
        mine = ours[name].squeeze(axis=1) if name == "pool5" else ours[name]
        assert mine.shape == reference[name].shape, name
        assert _agreement(mine, reference[name]) <= 1e-3, (name, _agreement(mine, reference[name]))
