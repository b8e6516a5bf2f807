"""Task loaders on tiny fixture trees in each dataset's real layout, and the store-extraction check."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from marblekit.core.store_layout import StoreAttrs, write_store
from marblekit.core.task_format import SPLITS
from marblekit.core.windows import Windowing
from marblekit.probes import assemble
from marblekit.probes.features import read_store
from marblekit.probes.tasks import Dataset, Item, get_task, giantsteps, gtzan


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_gtzan_genre_uses_shipped_filtered_split(tmp_path):
    (tmp_path / "genres").mkdir()
    data = get_task("gtzan-genre").load(tmp_path)
    counts = {s: sum(i.split == s for i in data.items) for s in SPLITS}
    assert counts == {"train": 442, "valid": 197, "test": 290}
    assert "genres/jazz/jazz.00054.wav" not in {i.id for i in data.items}
    rock = next(i for i in data.items if i.id.startswith("genres/rock/"))
    assert data.outputs[rock.label] == "rock" and rock.label == 9


@pytest.mark.parametrize("seconds", [29.98, 30.0, 30.013, 30.65])
def test_gtzan_genre_runs_each_clip_whole_in_one_window(seconds):
    needs = get_task("gtzan-genre").features
    n = int(seconds * 24000)
    assert Windowing(needs.window_s, needs.hop_s).bounds(n, 24000) == [(0, n)]


def test_gtzan_beat_reads_jams(tmp_path):
    beats = tmp_path / gtzan.BEATS_DIR
    for split, names in gtzan.split_lists().items():
        for name in names:
            times = [0.5, 1.0, 1.5] if name == "blues/blues.00029.wav" else [0.25]
            jams = {"annotations": [
                {"namespace": "beat", "sandbox": {"annotation_type": "downbeat"},
                 "data": [{"time": 0.5, "duration": 0, "value": 1, "confidence": 1}]},
                {"namespace": "beat", "sandbox": {"annotation_type": "beat"},
                 "data": [{"time": t, "duration": 0, "value": 1, "confidence": 1} for t in times[::-1]]}]}
            write(beats / f"{Path(name).name}.jams", json.dumps(jams))
    data = get_task("gtzan-beat").load(tmp_path)
    item = next(i for i in data.items if i.id == "genres/blues/blues.00029.wav")
    np.testing.assert_allclose(item.label, [0.5, 1.0, 1.5])


def test_gtzan_beat_trains_on_ten_second_crops_of_the_stored_frames(tmp_path):
    """The reference's 10 s training crops, at the store's frame rate; evaluation keeps whole clips."""
    fps, seconds, width = 50, 12, 4
    attrs = StoreAttrs(model="m", sample_rate=16000, frame_rate=fps, window_s=30.0, hop_s=30.0, layers=(0, 1),
                       frame_layers=(0, 1), layer_dims=(width,) * 2, weighted_layers=(1,), random_init=True,
                       precision="fp16")
    ids = [f"genres/blues/blues.0000{i}.wav" for i in range(3)]
    frames = np.random.default_rng(0).normal(size=(3 * seconds * fps, 2, width))
    write_store(tmp_path / "s.zarr", attrs, ids, pooled=np.zeros((3, 2, width)), window_track=np.arange(3),
                window_length=[float(seconds)] * 3, frames=frames, frame_counts=[seconds * fps] * 3)
    dataset = Dataset([Item(i, split, np.array([1.0, 2.0])) for i, split in zip(ids, SPLITS)], ("no beat", "beat"))
    data = assemble.probe_data(get_task("gtzan-beat"), dataset, read_store(tmp_path / "s.zarr", "frames"), "s.zarr")
    assert data.train.crop_rows == 10 * fps and data.train.n_items == 1
    assert len(data.valid.rows) == len(data.test.rows) == seconds * fps


def write_mp3(path: Path, seconds: float, rate: int = 8000) -> None:
    """A quiet tone as MP3 (PyAV's LAME), whose container states its duration."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    samples = (0.1 * np.sin(np.arange(int(seconds * rate)) * 0.3)).astype(np.float32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libmp3lame", rate=rate, layout="mono")
        for first in range(0, len(samples), 11520):
            frame = av.AudioFrame.from_ndarray(samples[None, first:first + 11520], format="flt", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


GIANTSTEPS_SECONDS = {1: 65.0, 2: 31.0, 3: 29.0, 4: 40.0, 5: 40.0, 10: 120.5, 11: 95.0}


def _giantsteps_tree(root: Path) -> None:
    train, test = root / giantsteps.TRAIN_REPO, root / giantsteps.TEST_REPO
    for song, seconds in GIANTSTEPS_SECONDS.items():
        write_mp3((train if song < 10 else test) / "audio" / f"{song}.LOFI.mp3", seconds)
    meta = ["ID\tARTIST\tTITLE", "1\tAlpha\tx", "2\tBravo, Charlie\tx", "3\tCharlie\tx", "4\tDelta\tx", "5\tEcho\tx"]
    write(train / "annotations" / "beatport_metadata.txt", "\n".join(meta) + "\n")
    annotations = ["ID\tMANUAL KEY\tC", "1\tF# minor\t2", "2\tC major\t2", "3\tA minor\t2", "4\tD major\t1",
                   "5\tE minor / G major\t2"]
    write(train / "annotations" / "annotations.txt", "\n".join(annotations) + "\n")
    for song in range(1, 6):
        write(train / "md5" / f"{song}.LOFI.md5")
    for song, key in ((10, "eb major"), (11, "g# minor")):
        write(test / "md5" / f"{song}.LOFI.md5")
        write(test / "annotations" / "key" / f"{song}.LOFI.key", key)


def test_giantsteps_key_split_and_labels(tmp_path):
    _giantsteps_tree(tmp_path)
    data = get_task("giantsteps-key").load(tmp_path)
    by_song = {i.group: i for i in data.items}
    assert set(by_song) == {"1", "2", "3", "10", "11"}  # 4: low confidence, 5: two keys
    assert data.outputs[by_song["1"].label] == "Gb minor"
    assert data.outputs[by_song["10"].label] == "Eb major" and by_song["10"].split == "test"
    assert data.outputs[by_song["11"].label] == "Ab minor"

    def slot(artist):
        return "train" if int(hashlib.sha1(artist.lower().encode()).hexdigest(), 16) % 116 < 100 else "valid"

    # Bravo and Charlie collaborate: if either hashes to valid, both songs of Charlie go valid
    shared = "valid" if "valid" in (slot("Bravo"), slot("Charlie")) else "train"
    assert by_song["2"].split == by_song["3"].split == shared
    assert by_song["1"].split == slot("Alpha")
    # clips from the container's duration: 65 s -> 2, 31 s -> 1, 29 s -> none, 120.5 s -> 4, 95 s -> 3
    assert {song: item.clips for song, item in by_song.items()} == {"1": 2, "2": 1, "3": 0, "10": 4, "11": 3}


@pytest.mark.parametrize(("seconds", "clips"), [(29.99, 0), (30.0, 1), (89.999, 2), (119.997, 3), (120.003, 4)])
def test_giantsteps_clip_count_follows_the_container_duration(seconds, clips):
    assert giantsteps.clip_count(seconds) == clips


def test_giantsteps_takes_as_many_windows_as_clips_even_a_few_ms_short(tmp_path):
    """A song whose container says 120.003 s decodes to 119.99 s: the store's 4th window is a 29.99 s tail,
    and the reference's 4th clip (cut by offset and duration from the container's length) is that audio."""
    attrs = StoreAttrs(model="m", sample_rate=24000, frame_rate=75, window_s=30.0, hop_s=30.0, layers=(0,),
                       layer_dims=(2,), weighted_layers=(0,), random_init=True, precision="fp16",
                       normalize_input=True, normalize_windows=True)
    write_store(tmp_path / "s.zarr", attrs, ["a.mp3", "b.mp3"], pooled=np.zeros((6, 1, 2)),
                window_track=[0, 0, 0, 0, 1, 1], window_start=[0, 30, 60, 90, 0, 30],
                window_length=[30, 30, 30, 29.99, 30, 5])
    features = read_store(tmp_path / "s.zarr")
    task = get_task("giantsteps-key")
    items = [Item("a.mp3", "train", 0, "a", clips=4), Item("b.mp3", "valid", 1, "b", clips=1),
             Item("b.mp3", "test", 1, "b", clips=1)]
    units = assemble._units(task, Dataset(items, giantsteps.KEY_NAMES), features, "s.zarr")
    assert [(u.item.id, list(u.rows)) for u in units] == [
        ("a.mp3#0", [0]), ("a.mp3#1", [1]), ("a.mp3#2", [2]), ("a.mp3#3", [3]), ("b.mp3#0", [4]), ("b.mp3#0", [4])]
    with pytest.raises(ValueError, match="b.mp3 has 2 windows but the task counts 3 clips"):
        assemble._units(task, Dataset([*items[:2], Item("b.mp3", "test", 1, "b", clips=3)], giantsteps.KEY_NAMES),
                        features, "s.zarr")
    with pytest.raises(ValueError, match="normalised per track but the task needs it normalised per window"):
        task.features.check(dataclasses.replace(attrs, normalize_windows=False), "pooled", "s.zarr")


def test_artist_split_two_hops():
    valid = next(f"artist{i}" for i in range(1000)
                 if int(hashlib.sha1(f"artist{i}".encode()).hexdigest(), 16) % 116 >= 100)
    train = [f"artist{i}" for i in range(1000)
             if int(hashlib.sha1(f"artist{i}".encode()).hexdigest(), 16) % 116 < 100][:3]
    # songs listed so that each pass moves validity one hop: after two passes the third artist stays train
    metadata = {1: {"ARTIST": f"{train[1]}, {train[2]}"}, 2: {"ARTIST": f"{train[0]},{train[1]}"},
                3: {"ARTIST": f"{valid}, {train[0]}"}}
    splits = giantsteps.artist_splits(metadata)
    assert splits[train[0]] == splits[train[1]] == "valid"
    assert splits[train[2]] == "train"


def test_mtt_top50_and_hex_split(tmp_path):
    tags = [f"tag{i}" for i in range(60)]
    rows = ["\t".join(["clip_id", *tags, "mp3_path"])]
    rng = np.random.default_rng(1)
    paths = ["0/a.mp3", "b/b.mp3", "c/c.mp3", "d/d.mp3", "f/e.mp3",
             "6/norine_braun-now_and_zen-08-gently-117-146.mp3"]
    labels = (rng.random((len(paths), 60)) < 0.5).astype(int)
    labels[:, 55] = 1  # the most frequent tag
    labels[:, 3] = 0
    for i, (path, row) in enumerate(zip(paths, labels)):
        rows.append("\t".join([str(i), *map(str, row), path]))
    write(tmp_path / "annotations_final.csv", "\n".join(rows) + "\n")
    data = get_task("mtt").load(tmp_path)
    assert len(data.outputs) == 50 and data.outputs[0] == "tag55" and "tag3" not in data.outputs
    splits = {i.id: i.split for i in data.items}
    assert splits == {"mp3/0/a.mp3": "train", "mp3/b/b.mp3": "train", "mp3/c/c.mp3": "valid",
                      "mp3/d/d.mp3": "test", "mp3/f/e.mp3": "test"}
    counts = labels[:, :].sum(0)
    top = [int(t[3:]) for t in data.outputs]
    assert sorted(counts[top])[0] >= sorted(counts, reverse=True)[49]
    item = next(i for i in data.items if i.id == "mp3/c/c.mp3")
    np.testing.assert_array_equal(item.label, labels[2, top])


def test_mtg_jamendo_reads_user_clone(tmp_path):
    folder = tmp_path / "mtg-jamendo-dataset" / "data" / "splits" / "split-0"
    header = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\r\n"
    write(folder / "autotagging_genre-train.tsv",
          header + "track_1\ta\tb\t41/1.mp3\t300.0\tgenre---rock\tgenre---pop\r\n")
    write(folder / "autotagging_genre-validation.tsv", header + "track_2\ta\tb\t42/2.mp3\t200.0\tgenre---jazz\r\n")
    write(folder / "autotagging_genre-test.tsv", header + "track_3\ta\tb\t43/3.mp3\t100.0\tgenre---pop\r\n")
    data = get_task("mtg-genre").load(tmp_path)
    assert data.outputs == ("genre---rock", "genre---pop", "genre---jazz")
    first = data.items[0]
    assert first.id == "audio-low/41/1.low.mp3" and first.split == "train"
    np.testing.assert_array_equal(first.label, [1, 1, 0])
    with pytest.raises(FileNotFoundError, match="mtg-jamendo-dataset clone"):
        get_task("mtg-top50").load(tmp_path)


def test_emomusic_split_and_zscore(tmp_path):
    info = ["song_id,file_name,Artist,Song title,start of the segment (min.sec),end of the segment (min.sec),"
            "Genre,Mediaeval 2013 set"]
    static = ["song_id, mean_arousal, std_arousal, mean_valence, std_valence"]
    artists = ["Björk!", "The Band", "Zed", "Quux", "Moby"]
    for i, artist in enumerate(artists, start=2):
        info.append(f"{i},{i}.mp3,{artist},t,0.0,0.45,rock,{'evaluation' if i == 6 else 'development'}")
        static.append(f"{i}, {i}.0, 1, {10 - i}.5, 1")
    write(tmp_path / "songs_info.csv", "\n".join(info) + "\n")
    write(tmp_path / "static_annotations.csv", "\n".join(static) + "\n")
    data = get_task("emomusic").load(tmp_path)
    splits = {i.id: i.split for i in data.items}
    assert splits["clips_45seconds/6.mp3"] == "test"
    cleaned = "bjrk"
    want = "train" if int(hashlib.sha1(cleaned.encode()).hexdigest(), 16) % 10 < 8 else "valid"
    assert splits["clips_45seconds/2.mp3"] == want
    dev = np.array([i.label for i in data.items if i.split != "test"])
    np.testing.assert_allclose(dev.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(dev.std(0), 1, atol=1e-6)
    assert data.outputs == ("arousal", "valence")


def test_nsynth(tmp_path):
    for split, pitch in (("train", 60), ("valid", 61), ("test", 62)):
        notes = {f"guitar_acoustic_000-0{pitch}-100": {"pitch": pitch, "instrument_family_str": "guitar"}}
        write(tmp_path / "nsynth-data" / f"nsynth-{split}" / "examples.json", json.dumps(notes))
    pitch = get_task("nsynth-pitch").load(tmp_path)
    assert [i.label for i in pitch.items] == [60, 61, 62]
    assert pitch.items[0].id == "nsynth-data/nsynth-train/audio/guitar_acoustic_000-060-100.wav"
    family = get_task("nsynth-instrument").load(tmp_path)
    assert {family.outputs[i.label] for i in family.items} == {"guitar"}


VOCALSET_FOLDERS = ("belt", "breathy", "inhaled", "lip_trill", "spoken", "straight", "trill", "trillo", "vibrato",
                    "vocal_fry", "fast_forte", "fast_piano", "forte", "messa", "pp", "slow_forte", "slow_piano")


def vocalset_layout(root: Path) -> dict[str, int]:
    """A VocalSet-shaped tree: FULL/<singer>/<context>/<technique>/ recordings of 20 singers, and their 3 s chunks
    under audio/ (0 to 3 per recording: some give none), with a misnamed file the reference renames and a
    duplicate it deletes. Returns the number of chunks per recording as the reference would name it."""
    rng = np.random.default_rng(7)
    singers = [f"f{i}" for i in range(1, 10)] + [f"m{i}" for i in range(1, 12)]
    counts = {}
    for folder in VOCALSET_FOLDERS:
        for singer in singers:
            for take in range(2):
                name = f"{singer}_scales_{folder}_{'ae'[take]}.wav"
                write(root / "FULL" / singer / "scales" / folder / name)
                counts[f"{folder}/{name}"] = int(rng.integers(0, 4))
    write(root / "FULL" / "f2" / "arpeggios" / "lip_trill" / "lip_trill_arps.wav")
    counts["lip_trill/f2_lip_trill_arps.wav"] = 2
    write(root / "FULL" / "f2" / "scales" / "vibrato" / "f2_scales_vibrato_a(1).wav")
    write(root / "FULL" / "f1" / "scales" / "belt" / ".DS_Store")
    for path, n in counts.items():
        folder, name = path.split("/")
        for j in range(n):
            write(root / "audio" / folder / f"{name.split('.')[0]}_{j:02d}.wav")
    return counts


def reference_vocalset_lists(counts: dict[str, int]) -> dict[str, dict[str, list[str]]]:
    """The reference preprocessing's split logic (benchmark/tasks/VocalSet/preprocess.py) on known chunk counts:
    numpy's global generator seeded once, chunk rows numbered by the sorted folder listing, sklearn's
    GroupShuffleSplit without a random_state, in the reference's order (its pandas frame as numpy columns)."""
    from sklearn.model_selection import GroupShuffleSplit

    np.random.seed(42617)
    rows = []
    for folder in sorted(VOCALSET_FOLDERS):
        files = sorted(p.split("/")[1] for p in counts if p.startswith(f"{folder}/"))
        for i, file in enumerate(files):
            for j in range(counts[f"{folder}/{file}"]):
                rows.append((f"{folder}/{file.split('.')[0]}_{str(j).zfill(2)}.wav", folder, file.split("_")[0], i))
    name, tech_class, singer_class, file_id = (np.array(column) for column in zip(*rows))
    train_type = ["f1", "f3", "f4", "f5", "f6", "f7", "f9", "m1", "m2", "m4", "m6", "m7", "m8", "m9", "m11"]
    tech = np.isin(tech_class, VOCALSET_FOLDERS[:10])
    train_val = np.flatnonzero(tech & np.isin(singer_class, train_type))
    test = np.flatnonzero(tech & np.isin(singer_class, ["f2", "f8", "m3", "m5", "m10"]))
    train_id, valid_id = next(GroupShuffleSplit(n_splits=1, test_size=0.4).split(train_val,
                                                                                 groups=file_id[train_val]))
    out = {"t": {"train": list(name[train_val[train_id]]), "valid": list(name[train_val[valid_id]]),
                 "test": list(name[test])}}
    train_val, test = next(GroupShuffleSplit(n_splits=1, test_size=0.2).split(name, groups=file_id))
    train_id, valid_id = next(GroupShuffleSplit(n_splits=1, test_size=0.4).split(train_val,
                                                                                 groups=file_id[train_val]))
    out["s"] = {"train": list(name[train_val[train_id]]), "valid": list(name[train_val[valid_id]]),
                "test": list(name[test])}
    return out


def memberships(dataset) -> dict[str, set[str]]:
    return {split: {i.id.removeprefix("audio/") for i in dataset.items if i.split == split} for split in SPLITS}


def test_vocalset_replays_the_reference_draw_exactly(tmp_path):
    expected = reference_vocalset_lists(vocalset_layout(tmp_path))
    for task, suffix in (("vocalset-technique", "t"), ("vocalset-singer", "s")):
        got = memberships(get_task(task).load(tmp_path))
        assert got == {split: set(names) for split, names in expected[suffix].items()}, task
    singer = get_task("vocalset-singer").load(tmp_path)
    assert {singer.outputs[i.label] for i in singer.items} == {f"f{i}" for i in range(1, 10)} | {
        f"m{i}" for i in range(1, 12)}
    technique = get_task("vocalset-technique").load(tmp_path)
    assert all(technique.outputs[i.label] == i.id.split("/")[1] for i in technique.items)


def test_vocalset_without_full_numbers_from_chunks_and_warns(tmp_path, caplog):
    counts = vocalset_layout(tmp_path)
    expected = reference_vocalset_lists(counts)["s"]
    import shutil

    shutil.rmtree(tmp_path / "FULL")
    got = memberships(get_task("vocalset-singer").load(tmp_path))
    assert "every recording gave a chunk" in caplog.text
    # recordings that gave no chunk shift the numbering, so membership differs from the reference's
    assert got != {split: set(names) for split, names in expected.items()}


def test_vocalset_reads_the_reference_lists_when_present(tmp_path):
    vocalset_layout(tmp_path)
    chosen = {"train": ["belt/f1_scales_belt_a_00.wav"], "valid": ["belt/m1_scales_belt_a_00.wav"],
              "test": ["vibrato/f2_scales_vibrato_a_00.wav"]}
    for split, names in chosen.items():
        for name in names:
            write(tmp_path / "audio" / name)
        write(tmp_path / f"{split}_t.txt", "\n".join(names) + "\n")
    assert memberships(get_task("vocalset-technique").load(tmp_path)) == {s: set(n) for s, n in chosen.items()}
    (tmp_path / "valid_t.txt").write_text("belt/missing_00.wav\n")
    with pytest.raises(FileNotFoundError, match="missing_00.wav"):
        get_task("vocalset-technique").load(tmp_path)


def test_musdb(tmp_path):
    for split in SPLITS:
        for stem in ("mixture", "vocals", "drums", "bass", "other"):
            write(tmp_path / split / f"Artist - {split}" / f"{stem}.wav")
    data = get_task("musdb18").load(tmp_path)
    assert [i.id for i in data.items] == [f"{s}/Artist - {s}/mixture.wav" for s in SPLITS]
    assert data.items[0].label["vocals"].endswith("train/Artist - train/vocals.wav")


def test_synthetic_manifest(tmp_path):
    folder = tmp_path / "synth-tagging"
    write(folder / "task.json", json.dumps({"kind": "multilabel", "classes": ["drums", "bass", "piano"],
                                            "chance": {"aucroc": 0.5}}))
    rows = [{"id": f"t{i}", "path": f"audio/t{i}.wav", "split": s, "label": labels}
            for i, (s, labels) in enumerate([("train", ["bass"]), ("valid", ["drums", "piano"]), ("test", [])])]
    write(folder / "manifest.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    data = get_task("synth-tagging").load(folder)
    np.testing.assert_array_equal(data.items[1].label, [1, 0, 1])
    assert data.items[0].id == "t0"
    with pytest.raises(ValueError, match="kind is 'multilabel'"):
        get_task("synth-pitch").load(folder)


def test_extraction_check_says_why():
    task = get_task("emomusic")
    attrs = StoreAttrs(model="m", sample_rate=16000, frame_rate=50.0, window_s=5.0, hop_s=5.0, crop_s=30.0,
                       layers=(0, 1), layer_dims=(4, 4), random_init=True, precision="fp32")
    task.features.check(attrs, "pooled", "s.zarr")
    with pytest.raises(ValueError, match="window_s is 30.0 but the task needs 5.0"):
        task.features.check(dataclasses.replace(attrs, window_s=30.0), "pooled", "s.zarr")
    with pytest.raises(ValueError, match="needs frames features"):
        get_task("gtzan-beat").features.check(dataclasses.replace(attrs, window_s=30.0, hop_s=30.0, crop_s=None),
                                              "pooled", "s.zarr")
