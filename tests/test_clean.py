"""Cleaning a folder of photos (faceattr clean): each problem found, duplicates pointing at the kept copy, the
quarantine's moves (nothing deleted or overwritten), the report's safety, the command line, and real photos."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from faceattr.cli import main
from faceattr.errors import ConfigError, DatasetError
from faceattr.prep import quarantine
from faceattr.prep.clean import CleanLimits, check_photo, clean_folder
from faceattr.prep.clean_report import REPORT_COLUMNS, CleanSummary, read_report
from faceattr.prep.duplicates import assign_duplicates, hash_distance, near_pairs
from faceattr.synthetic.drawing import draw_face

#: Each generated file and the problems it must be reported with (MTCNN run on them).
EXPECTED = {
    "portrait.jpg": set(),  # a drawn face MTCNN finds; kept: its exact copy sorts after it
    "z_copy/portrait.jpg": {"duplicate"},
    "z_copy/portrait_resized.jpg": {"near_duplicate"},
    "truncated.jpg": {"unreadable"},
    "notes.jpg": {"unreadable"},
    "tiny.png": {"too_small", "no_face"},
    "banner.png": {"extreme_aspect", "no_face"},
    "blank.png": {"no_face"},
    "two_faces.jpg": {"several_faces"},
    "small_face.png": {"small_face"},
}


def drawn_face(size: tuple[int, int] = (178, 218)) -> Image.Image:
    """A drawn face that MTCNN finds (not every drawing is found: this seed's is, at every size used here)."""
    return draw_face({"Male": False}, size=size, rng=np.random.default_rng(3))


def noise(width: int, height: int, seed: int) -> Image.Image:
    """Random pixels: a readable photo without a face, far from every other photo's perceptual hash."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def make_dirty_folder(folder: Path) -> Path:
    """Writes one file per case of :data:`EXPECTED` into ``folder``."""
    (folder / "z_copy").mkdir(parents=True)
    drawn_face((240, 294)).save(folder / "portrait.jpg", quality=95)
    shutil.copyfile(folder / "portrait.jpg", folder / "z_copy" / "portrait.jpg")
    drawn_face((200, 245)).save(folder / "z_copy" / "portrait_resized.jpg", quality=60)
    encoded = io.BytesIO()
    noise(300, 300, 1).save(encoded, "JPEG")
    (folder / "truncated.jpg").write_bytes(encoded.getvalue()[:len(encoded.getvalue()) // 2])
    (folder / "notes.jpg").write_text("not an image")
    noise(40, 40, 2).save(folder / "tiny.png")
    noise(600, 150, 3).save(folder / "banner.png")
    Image.new("RGB", (240, 240), (128, 128, 128)).save(folder / "blank.png")
    two = Image.new("RGB", (400, 258), (128, 128, 128))
    two.paste(drawn_face(), (30, 20))
    two.paste(ImageOps.mirror(drawn_face()), (192, 20))
    two.save(folder / "two_faces.jpg", quality=95)
    small = noise(320, 320, 4)
    small.paste(drawn_face((60, 73)), (130, 120))  # a face about 26 px: under the 64 px default
    small.save(folder / "small_face.png")
    return folder


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root``: relative path -> SHA-256 of its bytes."""
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def detected(tmp_path_factory: pytest.TempPathFactory) -> tuple[CleanSummary, dict[str, dict[str, str]]]:
    """One run with MTCNN over the dirty folder (dry run, quarantine named): the summary and the report by path."""
    root = tmp_path_factory.mktemp("detected")
    folder = make_dirty_folder(root / "photos")
    summary = clean_folder(folder, root / "report.csv", quarantine=root / "rejected")
    return summary, {row["path"]: row for row in read_report(root / "report.csv")}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_dirty_folder(tmp_path / "photos")


# ---- what is found --------------------------------------------------------------------------------------------

def test_each_file_is_reported_with_exactly_its_problems(detected) -> None:
    _, rows = detected
    assert {path: set(row["problems"].split()) for path, row in rows.items()} == EXPECTED


def test_report_has_one_row_per_file_in_path_order_and_counts_match(detected) -> None:
    summary, rows = detected
    assert list(rows) == sorted(EXPECTED)
    assert summary.counts == {"unreadable": 2, "too_small": 1, "extreme_aspect": 1, "no_face": 3, "several_faces": 1,
                              "small_face": 1, "duplicate": 1, "near_duplicate": 1}
    assert summary.flagged == len(EXPECTED) - 1


def test_copies_name_the_kept_photo_with_their_hash_distance(detected) -> None:
    _, rows = detected
    assert rows["z_copy/portrait.jpg"]["duplicate_of"] == rows["z_copy/portrait_resized.jpg"]["duplicate_of"] \
        == "portrait.jpg"
    assert rows["z_copy/portrait.jpg"]["sha256"] == rows["portrait.jpg"]["sha256"]
    assert int(rows["z_copy/portrait_resized.jpg"]["distance"]) <= CleanLimits().near_distance
    assert rows["portrait.jpg"]["duplicate_of"] == "" and rows["portrait.jpg"]["status"] == "ok"


def test_faces_are_counted_and_sized_in_the_photos_pixels(detected) -> None:
    _, rows = detected
    assert [rows[name]["faces"] for name in ("portrait.jpg", "two_faces.jpg", "blank.png", "small_face.png")] == \
        ["1", "2", "0", "1"]
    # The face spans about 45% of the drawing's width, whatever the drawing's size.
    assert 0.35 * 240 < float(rows["portrait.jpg"]["face_size"]) < 0.55 * 240
    assert 0.35 * 200 < float(rows["z_copy/portrait_resized.jpg"]["face_size"]) < 0.55 * 200
    assert float(rows["small_face.png"]["face_size"]) < 40
    assert (rows["banner.png"]["width"], rows["banner.png"]["height"]) == ("600", "150")


def test_unreadable_files_say_why_and_have_no_hash_or_size(detected) -> None:
    _, rows = detected
    assert "truncated" in rows["truncated.jpg"]["error"]
    assert "cannot identify image file" in rows["notes.jpg"]["error"]
    assert all(rows[name]["phash"] == rows[name]["width"] == "" for name in ("truncated.jpg", "notes.jpg"))
    assert rows["notes.jpg"]["bytes"] == "12" and len(rows["notes.jpg"]["sha256"]) == 64


def test_dry_run_says_where_each_problem_file_would_go_and_moves_nothing(detected, tmp_path: Path) -> None:
    summary, rows = detected
    folder = summary.report.parent / "photos"
    assert all(row["status"] == "would_move" and row["moved_to"] == str(folder.parent / "rejected" / path)
               for path, row in rows.items() if EXPECTED[path])
    assert set(tree(folder)) == set(EXPECTED) and not (folder.parent / "rejected").exists()


def test_a_large_truncated_jpeg_is_unreadable_though_decoded_at_an_eighth(tmp_path: Path) -> None:
    encoded = io.BytesIO()
    noise(2400, 1600, 6).save(encoded, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(encoded.getvalue()[:-5000])
    check = check_photo(tmp_path / "cut.jpg", "cut.jpg", CleanLimits(), detector=None)
    assert check.problems == ["unreadable"] and "truncated" in check.error


def test_a_decompression_bomb_is_too_large_and_not_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (300, 200)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 200 // 2 - 1)  # PIL refuses it at open: over twice the limit
    check = check_photo(tmp_path / "bomb.png", "bomb.png", CleanLimits(), detector=None)
    assert check.problems == ["too_large"] and "not decoded" in check.error and check.phash == ""


def test_without_faces_only_the_file_size_and_duplicate_checks_run(folder: Path, tmp_path: Path) -> None:
    summary = clean_folder(folder, tmp_path / "report.csv", skip_faces=True)
    face_problems = {"no_face", "several_faces", "small_face"}
    assert {check.path: set(check.problems) for check in summary.checks} == \
        {path: problems - face_problems for path, problems in EXPECTED.items()}
    assert all(check.faces is None for check in summary.checks)


def test_near_duplicates_can_be_turned_off_exact_ones_cannot(folder: Path, tmp_path: Path) -> None:
    summary = clean_folder(folder, tmp_path / "report.csv", skip_faces=True, limits=CleanLimits(near_distance=-1))
    flagged = {check.path: check.problems for check in summary.checks if check.duplicate_of}
    assert flagged == {"z_copy/portrait.jpg": ["duplicate"]}


def test_thresholds_move_the_size_checks(folder: Path, tmp_path: Path) -> None:
    summary = clean_folder(folder, tmp_path / "report.csv", skip_faces=True,
                           limits=CleanLimits(min_side=30, max_side=500, max_aspect=5.0))
    problems = {check.path: set(check.problems) for check in summary.checks}
    assert problems["tiny.png"] == set() and problems["banner.png"] == {"too_large"}


# ---- quarantine: moved, never deleted or overwritten ------------------------------------------------------------

def test_move_puts_each_problem_file_at_its_relative_path_and_loses_no_byte(folder: Path, tmp_path: Path) -> None:
    before = tree(folder)
    rejected = tmp_path / "rejected"
    summary = clean_folder(folder, tmp_path / "report.csv", quarantine=rejected, move=True, skip_faces=True)
    moved = {check.path for check in summary.checks if check.problems}
    assert summary.moved == len(moved) == 6 and summary.move_errors == []
    assert tree(rejected) == {path: before[path] for path in moved}
    assert tree(folder) == {path: digest for path, digest in before.items() if path not in moved}
    rows = read_report(tmp_path / "report.csv")
    assert {row["path"]: row["status"] for row in rows} == {path: "moved" if path in moved else "ok" for path in before}


def test_a_taken_place_in_the_quarantine_is_an_error_naming_both_and_nothing_moves(folder: Path,
                                                                                   tmp_path: Path) -> None:
    rejected = tmp_path / "rejected"
    rejected.mkdir()
    (rejected / "notes.jpg").write_text("the user's own file")
    before = tree(folder)
    taken = f"{rejected / 'notes.jpg'} is taken \\(would receive {folder / 'notes.jpg'}\\)"
    with pytest.raises(DatasetError, match=taken):
        clean_folder(folder, tmp_path / "report.csv", quarantine=rejected, move=True, skip_faces=True)
    assert tree(folder) == before
    assert tree(rejected) == {"notes.jpg": hashlib.sha256(b"the user's own file").hexdigest()}


def test_move_file_never_replaces_a_file_that_appears_meanwhile(tmp_path: Path) -> None:
    source, target = tmp_path / "a.jpg", tmp_path / "q" / "a.jpg"
    source.write_bytes(b"photo")
    target.parent.mkdir()
    target.write_bytes(b"other")
    with pytest.raises(OSError, match=f"cannot move {source} to {target}"):
        quarantine.move_file(source, target)
    assert source.read_bytes() == b"photo" and target.read_bytes() == b"other"


def test_move_across_file_systems_copies_then_removes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(quarantine.os, "link", no_link)
    source, target = tmp_path / "a.jpg", tmp_path / "q" / "sub" / "a.jpg"
    source.write_bytes(b"photo")
    quarantine.move_file(source, target)
    assert target.read_bytes() == b"photo" and not source.exists()


# ---- the report and the arguments -------------------------------------------------------------------------------

def test_an_existing_report_is_kept_unless_forced_and_a_photo_never_replaced(folder: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    report.write_text("the user's notes")
    with pytest.raises(DatasetError, match="report already exists"):
        clean_folder(folder, report, skip_faces=True)
    assert report.read_text() == "the user's notes"
    clean_folder(folder, report, skip_faces=True, force=True)
    assert tuple(report.read_text().splitlines()[0].split(",")) == REPORT_COLUMNS
    with pytest.raises(DatasetError, match="would replace one of the photos"):
        clean_folder(folder, folder / "blank.png", skip_faces=True, force=True)
    assert Image.open(folder / "blank.png").size == (240, 240)


def test_bad_arguments_are_refused_before_any_file_is_read(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--quarantine DIR"):
        clean_folder(folder, tmp_path / "r.csv", move=True)
    with pytest.raises(DatasetError, match="quarantine folder is the folder being cleaned"):
        clean_folder(folder, tmp_path / "r.csv", quarantine=folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        clean_folder(tmp_path / "empty", tmp_path / "r.csv")
    with pytest.raises(ConfigError, match="max_aspect"):
        CleanLimits(max_aspect=0.5)


def test_file_names_that_look_like_formulas_are_made_safe(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    noise(200, 200, 5).save(tmp_path / "photos" / "=HYPERLINK(1).png")
    clean_folder(tmp_path / "photos", tmp_path / "report.csv", skip_faces=True)
    assert read_report(tmp_path / "report.csv")[0]["path"] == "'=HYPERLINK(1).png"


def test_without_imagehash_the_error_names_the_extra(folder: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imagehash", None)
    with pytest.raises(ConfigError, match=r'pip install "faceattr\[label\]"'):
        clean_folder(folder, tmp_path / "report.csv", skip_faces=True)
    assert not (tmp_path / "report.csv").exists()


# ---- near-duplicate search -----------------------------------------------------------------------------------------

def test_near_pairs_are_every_pair_within_the_distance() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64)
    # Close relatives of some hashes (1-8 bits flipped), so that pairs exist at every distance.
    flips = [int(base[i]) ^ sum(1 << int(b) for b in rng.choice(64, 1 + i % 8, replace=False)) for i in range(60)]
    hashes = [f"{int(value):016x}" for value in [*base.tolist(), *flips]]
    expected = sorted((i, j, hash_distance(hashes[i], hashes[j])) for i in range(len(hashes))
                      for j in range(i + 1, len(hashes)) if hash_distance(hashes[i], hashes[j]) <= 5)
    assert near_pairs(hashes, 5) == expected and len(expected) >= 30


def test_near_pairs_takes_under_two_seconds_for_10000_photos() -> None:
    hashes = [f"{value:016x}" for value in np.random.default_rng(1).integers(0, 2**63, 10_000).tolist()]
    started = time.perf_counter()
    near_pairs(hashes, 6)
    assert time.perf_counter() - started < 2.0


def test_each_copy_points_at_a_kept_neighbour_never_along_a_chain() -> None:
    # 0 ~ 1 ~ 2 ~ 3 in a chain; 1 is the best: 0 and 2 are its copies, 3 (not 1's neighbour) is kept.
    assert assign_duplicates(4, [(0, 1), (1, 2), (2, 3)], order=[1, 0, 2, 3]) == {0: 1, 2: 1}


# ---- the command line --------------------------------------------------------------------------------------------

def test_cli_prints_the_counts_and_report_and_exits_0_with_problems(folder: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    report = tmp_path / "out" / "report.csv"
    status = main(["clean", str(folder), "--skip-faces", "--report", str(report), "--quarantine",
                   str(tmp_path / "rejected")])
    out = capsys.readouterr().out
    assert status == 0
    assert "10 files checked" in out and "4 ok, 6 with problems" in out
    assert "  unreadable       2\n" in out and "  near_duplicate   1\n" in out
    assert f"dry run: 6 files would move to {tmp_path / 'rejected'}" in out and f"report: {report}\n" in out
    assert len(read_report(report)) == 10 and not (tmp_path / "rejected").exists()


def test_cli_default_report_is_in_the_folder_and_refused_the_second_time(folder: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    assert main(["clean", str(folder), "--skip-faces"]) == 0
    assert (folder / "clean-report.csv").is_file()
    assert main(["clean", str(folder), "--skip-faces"]) == 2
    assert "report already exists" in capsys.readouterr().err
    assert main(["clean", str(folder), "--skip-faces", "--force", "--quarantine", str(folder / "rejected"),
                 "--move"]) == 0
    assert "moved 6 files to" in capsys.readouterr().out
    # The quarantine inside the folder is not searched again: the second run finds the 4 files left.
    assert main(["clean", str(folder), "--skip-faces", "--force", "--quarantine", str(folder / "rejected")]) == 0
    assert "4 files checked" in capsys.readouterr().out


def test_cli_exits_1_when_a_file_cannot_be_moved(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    real_link = os.link

    def refuse_notes(source, target, **kwargs):
        if Path(source).name == "notes.jpg":
            raise OSError(errno.EACCES, "Permission denied")
        real_link(source, target, **kwargs)

    monkeypatch.setattr(quarantine.os, "link", refuse_notes)
    status = main(["clean", str(folder), "--skip-faces", "--report", str(tmp_path / "r.csv"), "--quarantine",
                   str(tmp_path / "rejected"), "--move"])
    captured = capsys.readouterr()
    assert status == 1 and "moved 5 files" in captured.out
    assert f"cannot move {folder / 'notes.jpg'} to {tmp_path / 'rejected' / 'notes.jpg'}" in captured.err
    assert (folder / "notes.jpg").is_file()
    rows = {row["path"]: row for row in read_report(tmp_path / "r.csv")}
    assert rows["notes.jpg"]["status"] == "move_failed" and "Permission denied" in rows["notes.jpg"]["error"]


# ---- real photos ---------------------------------------------------------------------------------------------------

#: Real photos linked into the folder cleaned (never copied): an exact copy, a photo of two people, the
#: same frame at two sizes.
REAL_PHOTOS = ("face_recognition/examples/biden.jpg", "face_recognition/tests/test_images/biden.jpg",
               "face_recognition/examples/two_people.jpg", "face_recognition/examples/obama-240p.jpg",
               "face_recognition/examples/obama-480p.jpg")


@pytest.mark.real_data
def test_real_photos_copies_and_group_photos_are_flagged(shared_data: Path, tmp_path: Path) -> None:
    for name in REAL_PHOTOS:
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "photos" / name).symlink_to(shared_data / "faces" / name)
    summary = clean_folder(tmp_path / "photos", tmp_path / "report.csv")
    checks = {check.path: check for check in summary.checks}
    assert {path: check.problems for path, check in checks.items()} == {
        REAL_PHOTOS[0]: [], REAL_PHOTOS[1]: ["duplicate"], REAL_PHOTOS[2]: ["several_faces"],
        REAL_PHOTOS[3]: ["small_face", "near_duplicate"], REAL_PHOTOS[4]: []}
    assert checks[REAL_PHOTOS[1]].duplicate_of == REAL_PHOTOS[0]
    assert checks[REAL_PHOTOS[3]].duplicate_of == REAL_PHOTOS[4]
    assert checks[REAL_PHOTOS[2]].faces == 2 and all(checks[name].faces == 1 for name in REAL_PHOTOS[3:])


def test_workers_give_the_same_report_as_one_process(folder: Path, tmp_path: Path) -> None:
    one = clean_folder(folder, tmp_path / "one.csv", skip_faces=True)
    two = clean_folder(folder, tmp_path / "two.csv", skip_faces=True, workers=2)
    assert [check.row() for check in two.checks] == [check.row() for check in one.checks]
