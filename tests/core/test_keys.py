"""Key classes against mir_eval's own reading of the names."""

from __future__ import annotations

import mir_eval
import pytest

from marblekit.core.keys import KEY_NAMES, key_index, parse_key


def test_every_class_name_means_its_class_to_mir_eval() -> None:
    assert len(KEY_NAMES) == 24
    for index, name in enumerate(KEY_NAMES):
        tonic, mode = mir_eval.key.split_key_string(name)
        assert (tonic, mode) == (index % 12, "minor" if index >= 12 else "major")
        assert key_index(tonic, mode == "minor") == index == parse_key(name)


@pytest.mark.parametrize("text, index", [("F# minor", 18), ("f# minor", 18), ("Gb minor", 18), ("C# major", 1),
                                         ("A# Minor", 22), ("B major\n", 11)])
def test_sharps_flats_and_case_parse_alike(text: str, index: int) -> None:
    assert parse_key(text) == index


@pytest.mark.parametrize("text", ["H major", "C", "", "C dorian"])
def test_an_unknown_key_is_named(text: str) -> None:
    with pytest.raises(ValueError, match="unknown key"):
        parse_key(text)
