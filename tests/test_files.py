"""Safe file writes: exclusive temporary files that never follow a symlink, the clean-up of stale ones, names that fit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faceattr import files
from faceattr.files import (
    NAME_MAX,
    fit_name,
    remove_stale_temporaries,
    temporary_name,
    write_exclusive,
)


def test_a_symlink_planted_at_the_destination_is_replaced_and_its_target_kept(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (tmp_path / "out.jpg").symlink_to(victim)
    write_exclusive(tmp_path / "out.jpg", lambda file: file.write(b"crop"))
    assert victim.read_bytes() == b"precious"
    assert not (tmp_path / "out.jpg").is_symlink() and (tmp_path / "out.jpg").read_bytes() == b"crop"


@pytest.mark.parametrize("planted", ["symlink", "file"])
def test_an_existing_temporary_name_is_never_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    planted: str) -> None:
    """Were the random name guessed, a link or file planted under it is refused, not written through."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    monkeypatch.setattr(files, "temporary_name", lambda name: f".{name}.0123abcd.tmp")
    guessed = tmp_path / ".out.jpg.0123abcd.tmp"
    if planted == "symlink":
        guessed.symlink_to(victim)
    else:
        guessed.write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        write_exclusive(tmp_path / "out.jpg", lambda file: file.write(b"crop"))
    assert victim.read_bytes() == b"precious" and not (tmp_path / "out.jpg").exists()
    assert guessed.is_symlink() if planted == "symlink" else guessed.read_bytes() == b"someone else's"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "out.jpg").write_bytes(b"old")

    def fail(file) -> None:
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_exclusive(tmp_path / "out.jpg", fail)
    assert sorted(os.listdir(tmp_path)) == ["out.jpg"] and (tmp_path / "out.jpg").read_bytes() == b"old"


def test_written_files_are_readable_by_others(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        write_exclusive(tmp_path / "out.jpg", lambda file: file.write(b"crop"))
    finally:
        os.umask(old_umask)
    assert (tmp_path / "out.jpg").stat().st_mode & 0o777 == 0o644


def test_only_the_named_files_stale_temporaries_are_removed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stale = [tmp_path / temporary_name("last.pt"), tmp_path / temporary_name("best.pt"),
             tmp_path / temporary_name("new\nline.png")]
    kept = [tmp_path / "last.pt", tmp_path / ".last.pt.tmp", tmp_path / ".last.pt.0123ABCD.tmp",
            tmp_path / ".other.pt.0123abcd.tmp", tmp_path / ".last.pt.0123abcd.tmp.keep"]
    (tmp_path / "sub").mkdir()
    kept.append(tmp_path / "sub" / temporary_name("last.pt"))
    for path in stale + kept:
        path.write_bytes(b"x")
    with caplog.at_level("INFO", logger="faceattr.files"):
        removed = remove_stale_temporaries(tmp_path, ["last.pt", "best.pt", "new\nline.png"])
    assert sorted(removed) == sorted(stale)
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)
    assert all(str(path) in caplog.text for path in stale)
    assert remove_stale_temporaries(tmp_path / "missing", ["last.pt"]) == []


def test_write_exclusive_writes_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    write_exclusive(target, lambda file: file.write(b"new"))
    assert target.read_bytes() == b"new"
    write_exclusive(target, lambda file: file.write(b"newer"))  # a previous output is replaced whole
    assert target.read_bytes() == b"newer"
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
