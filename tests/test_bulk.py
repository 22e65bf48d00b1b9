"""Bulk prediction with Ray Data (faceattr.bulk, ``faceattr bulk``): the rows, the inputs, resuming, refusals."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from conftest import start_local_ray
from PIL import Image

from faceattr import cli
from faceattr.attributes import ATTRIBUTES
from faceattr.bulk import BULK_COLUMNS, MARKER, predict_collection
from faceattr.errors import ConfigError, DatasetError
from faceattr.inference.predictor import Predictor
from faceattr.inference.results import CSV_COLUMNS

REPO = Path(__file__).resolve().parents[1]

#: Real photos (../shared/data/faces): two people, one, one.
PHOTOS = ("face_recognition/examples/two_people.jpg", "face_recognition/examples/biden.jpg",
          "facenet-pytorch/data/test_images/paul_rudd/1.jpg")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray of 2 CPUs for the module: it takes seconds to start."""
    start_local_ray(num_cpus=2)
    yield
    ray.shutdown()


def blank_photos(folder: Path, count: int) -> list[Path]:
    """``count`` flat grey images, in which MTCNN finds no face."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"blank{number}.png" for number in range(count)]
    for number, path in enumerate(paths):
        Image.fromarray(np.full((64, 64, 3), 60 + 40 * number, np.uint8)).save(path)
    return paths


@pytest.fixture(scope="module")
def real_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of three real photos and a blank image; the test is skipped without ../shared/data."""
    faces = REPO.parent / "shared" / "data" / "faces"
    if not faces.is_dir():
        pytest.skip(f"real photos not found at {faces}")
    folder = tmp_path_factory.mktemp("photos")
    for number, photo in enumerate(PHOTOS):
        shutil.copyfile(faces / photo, folder / f"{number}_{Path(photo).name}")
    blank_photos(folder, 1)
    return folder


def test_a_folder_gives_the_faces_predict_many_gives(real_photos, checkpoint, tmp_path) -> None:
    summary = predict_collection(real_photos, tmp_path / "faces.parquet", model=checkpoint, batch_size=2,
                                 num_workers=2, part_images=1)
    parts = [pq.read_table(part).column("path").to_pylist() for part in (tmp_path / "faces.parquet").glob("part-*")]
    assert summary.parts == len(parts) >= 2
    assert sum(len(set(paths)) for paths in parts) == 4  # a photo's rows are never in two parts
    table = pq.read_table(tmp_path / "faces.parquet").to_pylist()
    expected = Predictor(checkpoint, device="cpu").predict_many(sorted(map(str, real_photos.iterdir())))
    assert (summary.images, summary.faces, summary.errors) == (4, sum(len(r.faces) for r in expected), 0)
    by_face = {(row["path"], row["face"]): row for row in table}
    for result in expected:
        if not result.faces:
            assert by_face[(result.source, None)]["x1"] is None
        for number, face in enumerate(result.faces, start=1):
            row = by_face[(result.source, number)]
            assert [row[c] for c in ("x1", "y1", "x2", "y2")] == pytest.approx(face.box, abs=1e-3)
            assert [row[name] for name in ATTRIBUTES] == pytest.approx([face.probabilities[n] for n in ATTRIBUTES],
                                                                       abs=1e-5)
            assert row["beauty"] == pytest.approx(face.beauty, abs=1e-5)
            assert row["attributes"] == list(face.attributes)
    assert len(table) == len(by_face) == 1 + sum(len(r.faces) for r in expected)


def test_csv_output_holds_the_rows_of_faceattr_predict_csv(real_photos, checkpoint, tmp_path, capsys) -> None:
    assert cli.main(["predict", str(real_photos), "--model", str(checkpoint), "--csv", str(tmp_path / "cli.csv")]) == 0
    assert cli.main(["bulk", str(real_photos), "--model", str(checkpoint), "--output", str(tmp_path / "bulk.csv"),
                     "--workers", "1"]) == 0
    assert "4 photos predicted" in capsys.readouterr().out
    with (tmp_path / "cli.csv").open(encoding="utf-8") as file:
        predicted = [dict(row) for row in csv.DictReader(file)]
    with next((tmp_path / "bulk.csv").glob("part-*.csv")).open(encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(BULK_COLUMNS)
    faces = sorted(({column: row[column] for column in CSV_COLUMNS} for row in rows if row["face"]),
                   key=lambda row: (row["path"], row["face"]))
    assert faces == predicted
    assert [(row["face"], row["error"]) for row in rows if not row["face"]] == [("", "")]  # the blank image


def test_no_face_and_unreadable_rows_and_a_resumed_run_skips_done_photos(checkpoint, tmp_path) -> None:
    blank, = blank_photos(tmp_path / "photos", 1)
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"not a jpeg")
    output = tmp_path / "faces.parquet"
    first = predict_collection(tmp_path / "photos", output, model=checkpoint, num_workers=1)
    rows = {row["path"]: row for row in pq.read_table(output).to_pylist()}
    assert (first.images, first.faces, first.errors, first.skipped) == (2, 0, 1, 0)
    assert rows[str(blank)]["face"] is None and rows[str(blank)]["error"] is None
    broken = rows[str(tmp_path / "photos" / "broken.jpg")]
    assert broken["face"] is None and "broken.jpg: cannot read image" in broken["error"]

    blank_photos(tmp_path / "photos", 2)  # blank1.png is new
    again = predict_collection(tmp_path / "photos", output, model=checkpoint, num_workers=1)
    assert (again.images, again.skipped, again.parts) == (1, 2, 1)
    paths = pq.read_table(output).column("path").to_pylist()
    assert sorted(paths) == sorted({*rows, str(tmp_path / "photos" / "blank1.png")})


def test_parquet_column_of_paths_relative_to_the_file(checkpoint, tmp_path) -> None:
    blank_photos(tmp_path / "photos", 2)
    pq.write_table(pa.table({"file": ["photos/blank0.png", "photos/blank1.png"]}), tmp_path / "list.parquet")
    summary = predict_collection(tmp_path / "list.parquet", tmp_path / "faces.csv", model=checkpoint,
                                 column="file", num_workers=1)
    assert summary.images == 2
    with next((tmp_path / "faces.csv").glob("part-*.csv")).open(encoding="utf-8") as file:
        assert sorted(row["path"] for row in csv.DictReader(file)) == ["photos/blank0.png", "photos/blank1.png"]
    with pytest.raises(DatasetError, match=r"list.parquet: no column 'path' \(columns: file\)"):
        predict_collection(tmp_path / "list.parquet", tmp_path / "other.csv", model=checkpoint)


def test_a_list_file_line_naming_no_photo_is_refused_by_line(checkpoint, tmp_path) -> None:
    blank_photos(tmp_path / "photos", 1)
    (tmp_path / "list.txt").write_text("photos/blank0.png\n\nphotos/missing.png\n")
    with pytest.raises(DatasetError, match=r"list.txt: line 3: 'photos/missing.png': no such file"):
        predict_collection(tmp_path / "list.txt", tmp_path / "faces.parquet", model=checkpoint)


def test_an_output_that_is_not_a_bulk_output_is_refused_and_left_alone(checkpoint, tmp_path) -> None:
    blank_photos(tmp_path / "photos", 1)
    (tmp_path / "mine.csv").write_text("my data\n")
    with pytest.raises(ConfigError, match="mine.csv: exists and is not a faceattr bulk output"):
        predict_collection(tmp_path / "photos", tmp_path / "mine.csv", model=checkpoint)
    assert (tmp_path / "mine.csv").read_text() == "my data\n"
    (tmp_path / "folder.parquet").mkdir()
    (tmp_path / "folder.parquet" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=f"folder.parquet: exists and is not a faceattr bulk output \\(no {MARKER}"):
        predict_collection(tmp_path / "photos", tmp_path / "folder.parquet", model=checkpoint)


def test_resuming_with_another_decision_policy_is_refused(checkpoint, tmp_path) -> None:
    output = tmp_path / "faces.parquet"
    output.mkdir()
    (output / MARKER).write_text('{"table": "parquet", "model": null, "decision": "f1"}')
    with pytest.raises(ConfigError, match="decision is 'f1', this run's is 'probability'"):
        predict_collection(tmp_path, output, decision="probability")


def test_cli_refuses_an_output_that_is_neither_parquet_nor_csv(tmp_path, capsys) -> None:
    blank_photos(tmp_path / "photos", 1)
    assert cli.main(["bulk", str(tmp_path / "photos"), "--output", str(tmp_path / "faces.xlsx")]) == cli.EXIT_USAGE
    assert "faces.xlsx: must end in .parquet or .csv" in capsys.readouterr().err
    assert not (tmp_path / "faces.xlsx").exists()


def test_without_ray_the_cli_names_the_extra_to_install(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray.data", None)  # what `import ray.data` finds where Ray is not installed
    assert cli.main(["bulk", str(tmp_path), "--output", str(tmp_path / "faces.parquet")]) == cli.EXIT_USAGE
    assert 'pip install "faceattr[ray]"' in capsys.readouterr().err
