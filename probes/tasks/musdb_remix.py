"""MUSDB18's remixing augmentation, drawn once into a folder that extracts like any MUSDB18 folder.

MARBLE's MUSDB18 prober trains on open-unmix's random remixes (``random_track_mix``): each of its
``samples_per_track`` samples per train track and epoch sums the four stems, the target's included, of tracks
drawn with ``random.choice`` at random starts (``random.uniform(0, duration - chunk)``), each stem scaled by a gain
drawn from [0.25, 1.25] and its channels swapped with probability 0.5, and passes the remix through the
backbone on the fly. A feature store cannot hold remixes drawn anew every epoch, so here they are drawn once:
``per_track`` remixes per train track, every stem of each from a random track, balanced so that every track
gives every stem exactly ``per_track`` times (the four stems' track orders shuffled independently).

The remixes become the train/ tracks of a new MUSDB18 folder (each ``chunk_s`` long: mixture and augmented
stems, float WAV at the source rate); its valid/ and test/ link to the original ones, ``remix.json`` records
every draw and ``mixtures.csv`` lists every split's mixtures, the catalog to extract (the stems are targets,
not inputs). The pool is finite where the reference's is not: a model sees the same remixes every epoch.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from marblekit.probes.tasks.base import require_dir
from marblekit.probes.tasks.musdb import STEMS

GAIN_RANGE = (0.25, 1.25)
SWAP_PROBABILITY = 0.5
DRAWS = "remix.json"
CATALOG = "mixtures.csv"


@dataclass(frozen=True)
class SourceDraw:
    """Where one stem of a remix comes from: a train track, a start in seconds, a gain, a channel swap."""

    track: int
    start_s: float
    gain: float
    swap: bool


def draw_remixes(durations: list[float], per_track: int, chunk_s: float,
                 rng: np.random.Generator) -> list[dict[str, SourceDraw]]:
    """``per_track`` remixes per track of ``durations`` (each track's shortest stem, seconds, all longer than
    ``chunk_s``): every track gives every stem ``per_track`` times, in an order shuffled per stem."""
    if per_track < 1:
        raise ValueError(f"--per-track must be at least 1, got {per_track}")
    short = [i for i, d in enumerate(durations) if d <= chunk_s]
    if short:
        raise ValueError(f"tracks {short} are not longer than the {chunk_s} s chunk")
    order = {stem: rng.permutation(np.repeat(np.arange(len(durations)), per_track)) for stem in STEMS}
    remixes = []
    for k in range(len(durations) * per_track):
        remix = {}
        for stem in STEMS:
            track = int(order[stem][k])
            remix[stem] = SourceDraw(track, float(rng.uniform(0, durations[track] - chunk_s)),
                                     float(rng.uniform(*GAIN_RANGE)), bool(rng.random() < SWAP_PROBABILITY))
        remixes.append(remix)
    return remixes


def augmented_chunk(path: Path, draw: SourceDraw, chunk_s: float) -> tuple[np.ndarray, int]:
    """A stem's stereo chunk [samples, 2] as the draw says (the reference crops at ``int(start * rate)``)."""
    import soundfile

    rate = soundfile.info(str(path)).samplerate
    audio, _ = soundfile.read(str(path), start=int(draw.start_s * rate), frames=int(chunk_s * rate),
                              dtype="float32", always_2d=True)
    stereo = np.repeat(audio, 2, axis=1) if audio.shape[1] == 1 else audio[:, :2]
    stereo = stereo[:, ::-1] if draw.swap else stereo
    return np.ascontiguousarray(stereo * np.float32(draw.gain)), rate


def train_tracks(root: Path) -> list[Path]:
    """The train track folders of a MUSDB18 folder, sorted."""
    return sorted(p for p in require_dir(root / "train", "the MUSDB18 train/ folder").iterdir() if p.is_dir())


def shortest_stem_seconds(track: Path) -> float:
    import soundfile

    return min(soundfile.info(str(track / f"{stem}.wav")).duration for stem in STEMS)


def write_remixed_folder(root: Path, out: Path, per_track: int, chunk_s: float = 6.0, seed: int = 0,
                         progress: bool = True) -> int:
    """The remixed MUSDB18 folder ``out`` of ``root`` (see the module); returns the number of remixes."""
    import soundfile
    from tqdm import tqdm

    tracks = train_tracks(root)
    for split in ("valid", "test"):
        require_dir(root / split, f"the MUSDB18 {split}/ folder")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: expected a new folder for the remixed MUSDB18")
    durations = [shortest_stem_seconds(track) for track in tracks]
    remixes = draw_remixes(durations, per_track, chunk_s, np.random.default_rng(seed))
    (out / "train").mkdir(parents=True)
    for split in ("valid", "test"):
        (out / split).symlink_to((root / split).resolve(), target_is_directory=True)
    for k, remix in enumerate(tqdm(remixes, desc="remixes", disable=not progress)):
        folder = out / "train" / f"remix-{k:05d}"
        folder.mkdir()
        chunks, rates = {}, {}
        for stem, draw in remix.items():
            path = tracks[draw.track] / f"{stem}.wav"
            chunks[stem], rates[path] = augmented_chunk(path, draw, chunk_s)
        if len(set(rates.values())) > 1:
            raise ValueError(f"stems of one remix have different sample rates {rates}: expected one rate for all "
                             "MUSDB18 stems")
        rate = next(iter(rates.values()))
        for stem, chunk in chunks.items():
            soundfile.write(str(folder / f"{stem}.wav"), chunk, rate, subtype="FLOAT")
        soundfile.write(str(folder / "mixture.wav"), sum(chunks.values()), rate, subtype="FLOAT")
    mixtures = sorted(p.relative_to(out).as_posix() for split in ("train", "valid", "test")
                      for p in (out / split).glob("*/mixture.wav"))
    with open(out / CATALOG, "w", newline="") as catalog:
        csv.writer(catalog).writerows([("id", "path"), *((m, m) for m in mixtures)])
    (out / DRAWS).write_text(json.dumps({
        "source": str(root.resolve()), "tracks": [t.name for t in tracks], "per_track": per_track,
        "chunk_s": chunk_s, "seed": seed,
        "remixes": [{stem: asdict(draw) for stem, draw in remix.items()} for remix in remixes]}, indent=1))
    return len(remixes)
