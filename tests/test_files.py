"""Tests of faceattr.files: outputs created exclusively, never through a planted link, under names that fit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faceattr.files import NAME_MAX, fit_name, write_exclusive


def test_write_exclusive_writes_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    write_exclusive(target, lambda file: file.write(b"new"))
    assert target.read_bytes() == b"new"
    write_exclusive(target, lambda file: file.write(b"newer"))  # a previous output is replaced whole
    assert target.read_bytes() == b"newer"
    assert sorted(os.listdir(tmp_path)) == ["a.bin"]


def test_write_exclusive_replaces_a_planted_link_and_never_writes_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.jpg").symlink_to(victim)
    write_exclusive(out / "a.jpg", lambda file: file.write(b"drawn"))
    assert victim.read_bytes() == b"precious"
    assert not (out / "a.jpg").is_symlink() and (out / "a.jpg").read_bytes() == b"drawn"


def test_a_failed_write_keeps_the_previous_file_and_removes_its_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def fail(file) -> None:
        file.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_exclusive(target, fail)
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["a.bin"]


def test_a_name_of_the_longest_length_still_gets_a_temporary(tmp_path: Path) -> None:
    target = tmp_path / ("a" * (NAME_MAX - 4) + ".jpg")
    write_exclusive(target, lambda file: file.write(b"x"))
    assert target.read_bytes() == b"x"


def test_fit_name_keeps_short_names_and_shortens_long_ones_distinctly_and_deterministically() -> None:
    assert fit_name("photo.jpg") == "photo.jpg"
    first, second = "a" * 300 + "1.jpg", "a" * 300 + "2.jpg"
    fitted = [fit_name(first), fit_name(second)]
    assert [len(os.fsencode(name)) for name in fitted] == [NAME_MAX, NAME_MAX]
    assert fitted[0] != fitted[1] and all(name.endswith(".jpg") for name in fitted)
    assert fit_name(first) == fitted[0]
    # Counted in bytes as the file system counts them: 'é' is two, an undecodable byte one.
    accented = fit_name("é" * 200 + ".jpg")
    assert len(os.fsencode(accented)) <= NAME_MAX and accented.startswith("é" * 10)
    undecodable = fit_name(os.fsdecode(b"caf\xe9" * 100 + b".jpg"))
    assert len(os.fsencode(undecodable)) <= NAME_MAX
