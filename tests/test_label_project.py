"""A labelling project's photos in (faces found and aligned, bad photos named) and its export out (a CSV that
tools/train.py reads, the raw votes, the crops), through the package and the ``faceattr label`` CLI."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from faceattr.cli import main
from faceattr.data.readers.csvfile import read_csv
from faceattr.errors import DatasetError, FaceAttrError
from faceattr.inference.align import CELEBA_SIZE
from faceattr.label.errors import LabelError
from faceattr.label.project import (
    EXPORT_COLUMNS,
    VOTE_COLUMNS,
    FacePreparer,
    export_archive,
    import_images,
    list_sources,
    write_export,
)
from faceattr.label.store import LabelStore

ASTRONAUT = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five different crops of one face, a mirrored one, a file that is not an image and a photo with no face."""
    folder = tmp_path_factory.mktemp("photos")
    face = Image.open(ASTRONAUT).convert("RGB")
    (folder / "people").mkdir()
    for i in range(5):
        face.crop((8 * i, 6 * i, face.width - 5 * i, face.height - 4 * i)).save(folder / "people" / f"p{i}.jpg")
    ImageOps.mirror(face).save(folder / "mirrored.png")
    (folder / "notes.jpg").write_bytes(b"not an image")
    Image.new("RGB", (160, 160), (180, 180, 180)).save(folder / "wall.jpg")
    return folder


@pytest.fixture(scope="module")
def preparer() -> FacePreparer:
    return FacePreparer(prior="beauty")


@pytest.fixture
def store(tmp_path: Path) -> LabelStore:
    return LabelStore(tmp_path / "labels.db")


def test_each_photo_becomes_its_aligned_face_and_bad_photos_are_named(photos, preparer, store) -> None:
    store.create_project("crew", "Which face is more attractive?")
    summary = import_images(store, "crew", photos, preparer)
    assert summary.added == 6
    assert sorted(name for name, _ in summary.left_out) == ["notes.jpg", "wall.jpg"]
    assert any("no face" in why for _, why in summary.left_out)
    assert all(why.startswith(str(photos / name)) or why.startswith(name) for name, why in summary.left_out)
    names = store.image_names("crew")
    assert sorted(names.values()) == ["mirrored.png", *(f"people/p{i}.jpg" for i in range(5))]
    admin = store.create_admin_token()
    face = Image.open(io.BytesIO(store.image_bytes(admin, next(iter(names)))))
    assert face.size == CELEBA_SIZE  # the crop the model's training images have
    assert Image.open(io.BytesIO(store.image_bytes(admin, next(iter(names)), "thumbnail"))).height == 96


def test_a_model_seeded_project_starts_each_image_from_its_prior(photos, preparer, store) -> None:
    from faceattr.label.schedule import ScheduleSettings

    store.create_project("seeded", "Which face is more attractive?", ScheduleSettings(scheme="model"))
    import_images(store, "seeded", photos, preparer)
    elo = [row.elo for row in store.ratings("seeded").images]
    assert len(set(np.round(elo, 6))) > 1  # not all at the seeds' common start of 0


def test_a_csv_lists_photos_with_the_teams_own_priors_and_a_bad_row_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"")
    good = tmp_path / "list.csv"
    good.write_text("image,prior\na.jpg,3.5\n/abs/b.jpg,\n")
    assert list_sources(good) == [("a.jpg", tmp_path / "a.jpg", 3.5), ("/abs/b.jpg", Path("/abs/b.jpg"), None)]
    bad = tmp_path / "bad.csv"
    bad.write_text("image,prior\na.jpg,3.5\nb.jpg,high\n")
    with pytest.raises(DatasetError, match=r"bad.csv, line 3: prior 'high' is not a number"):
        list_sources(bad)
    (tmp_path / "nocol.csv").write_text("path\na.jpg\n")
    with pytest.raises(DatasetError, match="line 1: no 'image' column"):
        list_sources(tmp_path / "nocol.csv")
    with pytest.raises(DatasetError, match="no such folder"):
        list_sources(tmp_path / "missing")


def voted_project(store: LabelStore, images: int = 8, votes: int = 120) -> list[int]:
    """A project whose votes always prefer the image added first (a lower id)."""
    store.create_project("crew", "Which face is more attractive?")
    ids = [store.add_image("crew", f"photos/{i}.jpg", f"face {i}".encode(), b"t") for i in range(images)]
    token = store.add_rater("crew", "ann")
    for _ in range(votes):
        pair = store.next_pair(token)
        store.vote(token, pair.pair_id, "left" if pair.left_id < pair.right_id else "right", response_ms=900)
    return ids


def test_the_export_is_a_csv_source_with_beauty_labels_best_first(store: LabelStore, tmp_path: Path) -> None:
    ids = voted_project(store)
    summary = write_export(store, "crew", tmp_path / "export", high_share=0.25, min_votes=5)
    assert (summary.images, summary.labelled) == (8, 8)
    with (tmp_path / "export" / "labels.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [row["source"] for row in rows] == [f"photos/{i}.jpg" for i in range(8)]  # the order the votes made
    beauty = [float(row["beauty"]) for row in rows]
    assert beauty == sorted(beauty, reverse=True) and all(1 <= b <= 5 for b in beauty)
    assert [row["high"] for row in rows] == ["1", "1"] + ["0"] * 6
    assert (tmp_path / "export" / rows[0]["image"]).read_bytes() == f"face {ids.index(ids[0])}".encode()
    with (tmp_path / "export" / "votes.csv").open() as file:
        votes = list(csv.DictReader(file))
    assert tuple(votes[0]) == VOTE_COLUMNS and len(votes) == 120
    result = read_csv(tmp_path / "export" / "labels.csv")
    scores = sorted(record.beauty for record in result.records)
    assert scores == pytest.approx(sorted(beauty), abs=1e-3)


def test_images_with_too_few_votes_get_no_score_rather_than_a_middling_one(store: LabelStore, tmp_path: Path) -> None:
    voted_project(store, images=8, votes=6)
    write_export(store, "crew", tmp_path / "export", min_votes=3)
    with (tmp_path / "export" / "labels.csv").open() as file:
        rows = list(csv.DictReader(file))
    few = [row for row in rows if int(row["votes"]) < 3]
    assert few and all(row["beauty"] == "" and row["high"] == "" for row in few)
    assert all(row["beauty"] for row in rows if int(row["votes"]) >= 3)


def test_an_export_never_writes_over_a_folder_and_the_archive_holds_the_same_files(store, tmp_path) -> None:
    voted_project(store)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    with pytest.raises(FaceAttrError, match="already exists"):
        write_export(store, "crew", tmp_path / "taken")
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep me"
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no staging left
    with pytest.raises(LabelError, match="high_share"):
        write_export(store, "crew", tmp_path / "new", high_share=1.5)
    names = zipfile.ZipFile(io.BytesIO(export_archive(store, "crew"))).namelist()
    assert names[:2] == ["crew/labels.csv", "crew/votes.csv"] and len(names) == 10


def test_the_label_cli_makes_a_project_a_rater_link_a_ranking_and_an_export(photos, tmp_path, capsys) -> None:
    db = str(tmp_path / "labels.db")
    assert main(["label", "--db", db, "init", "crew", "--images", str(photos),
                 "--question", "Who looks younger?"]) == 0
    out = capsys.readouterr().out
    assert "6 images added, 2 left out" in out and "admin token (shown once" in out
    assert main(["label", "--db", db, "rater", "crew", "ann", "--url", "http://10.0.0.5:8100/"]) == 0
    link = capsys.readouterr().out.strip().rsplit(" ", 1)[1]
    assert link.startswith("http://10.0.0.5:8100/vote#token=fa_rater_")
    store = LabelStore(db)
    token = link.split("#token=")[1]
    for _ in range(30):
        pair = store.next_pair(token)
        store.vote(token, pair.pair_id, "left" if pair.left_id < pair.right_id else "right")
    assert main(["label", "--db", db, "ratings", "crew", "--top", "3"]) == 0
    ranking = capsys.readouterr().out
    assert "30 decided votes" in ranking and "rater ann: 30 votes" in ranking
    assert main(["label", "--db", db, "export", "crew", str(tmp_path / "out"), "--min-votes", "2"]) == 0
    assert "labels.csv (6 of 6 images scored)" in capsys.readouterr().out
    assert main(["label", "--db", db, "export", "crew", str(tmp_path / "out")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["label", "--db", db, "init", "crew", "--images", str(photos), "--question", "Again?"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["label", "--db", db, "init", "new", "--images", str(tmp_path / "nowhere"), "--question", "Q?"]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
