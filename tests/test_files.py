"""Checked, atomic files (`rramfx.files`): a round trip, and every kind of damage refused by name."""

import json

import pytest

from rramfx.errors import FileFormatError, ResultsFileError
from rramfx.files import load_checked_json, save_checked_json, write_atomic


def test_round_trip_and_no_temporary_left(tmp_path):
    path = save_checked_json(tmp_path / "a" / "r.json", "rramfx.Test", 2, {"x": [1, 2.5], "y": None})
    assert load_checked_json(path, "rramfx.Test", versions=(1, 2)) == (2, {"x": [1, 2.5], "y": None})
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]


@pytest.mark.parametrize("damage, words", [
    (lambda t: t[: len(t) // 2], "not valid JSON"),
    (lambda t: t.replace('"x"', '"z"'), "checksum"),
    (lambda t: t.replace("2.5", "2.6"), "checksum"),
    (lambda t: t.replace("rramfx.Test", "rramfx.Other"), "not an rramfx.Test file"),
    (lambda t: t.replace('"version": 1', '"version": 9'), "version 9"),
])
def test_damaged_file_is_refused_naming_it(tmp_path, damage, words):
    path = save_checked_json(tmp_path / "r.json", "rramfx.Test", 1, {"x": [1, 2.5]})
    path.write_text(damage(path.read_text()))
    with pytest.raises(ResultsFileError, match=words) as info:
        load_checked_json(path, "rramfx.Test", ResultsFileError)
    assert str(path) in str(info.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        load_checked_json(tmp_path / "none.json", "rramfx.Test")
    write_atomic(tmp_path / "b.json", b"\xff\xfe\x00")
    with pytest.raises(FileFormatError, match="UTF-8"):
        load_checked_json(tmp_path / "b.json", "rramfx.Test")
    write_atomic(tmp_path / "l.json", json.dumps([1, 2]))
    with pytest.raises(FileFormatError, match="format 'list'"):
        load_checked_json(tmp_path / "l.json", "rramfx.Test")
