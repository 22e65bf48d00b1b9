"""Tests of the generated datasets: the files copy the official layouts and the readers take them."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceattr.attributes import ATTRIBUTE_INDEX, ATTRIBUTES
from faceattr.data.readers.celeba import read_celeba
from faceattr.data.readers.celebahq import read_celebahq
from faceattr.data.readers.csvfile import read_csv
from faceattr.data.readers.scut import read_scut
from faceattr.synthetic.fixtures import (
    make_celeba,
    make_celebahq,
    make_csv,
    make_demo_data,
    make_scut,
)

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_demo_data(tmp_path_factory.mktemp("demo"))


def test_make_celeba_writes_the_official_formats(tmp_path: Path) -> None:
    root = make_celeba(tmp_path, identities=4, images_per_identity=2)
    attributes = (root / "list_attr_celeba.txt").read_bytes().decode().split("\r\n")
    assert attributes[0] == "8"
    assert attributes[1].split() == list(ATTRIBUTES)
    assert all(re.fullmatch(r"\d{6}\.jpg( (-1| 1)){40}", line) for line in attributes[2:-1])
    assert re.fullmatch(r"(\d{6}\.jpg [012]\r\n){8}", (root / "list_eval_partition.txt").read_bytes().decode())
    assert re.fullmatch(r"(\d{6}\.jpg \d+\n){8}", (root / "identity_CelebA.txt").read_text())
    assert Image.open(root / "img_align_celeba" / "000001.jpg").size == (178, 218)


def test_make_celeba_partition_is_identity_disjoint(tmp_path: Path) -> None:
    records = read_celeba(make_celeba(tmp_path, identities=20, images_per_identity=3)).records
    sides: dict[str, set[str]] = {}
    for record in records:
        sides.setdefault(record.group, set()).add(record.split)
    assert all(len(splits) == 1 for splits in sides.values())
    people = {split: sum(splits == {split} for splits in sides.values()) for split in ("train", "val", "test")}
    assert people == {"train": 16, "val": 2, "test": 2}
    assert all(sum(r.group == group for r in records) == 3 for group in sides)


def test_make_celeba_keeps_person_attributes_across_a_persons_images(tmp_path: Path) -> None:
    records = read_celeba(make_celeba(tmp_path, identities=5, images_per_identity=4)).records
    person = [ATTRIBUTE_INDEX[name] for name in ("Male", "Big_Nose", "Young", "Pale_Skin")]
    for group in {r.group for r in records}:
        rows = np.stack([r.attributes[person] for r in records if r.group == group])
        assert (rows == rows[0]).all()


def test_make_celeba_is_deterministic_given_the_seed(tmp_path: Path) -> None:
    first, second, other = (make_celeba(tmp_path / name, identities=3, images_per_identity=2, seed=seed)
                            for name, seed in (("a", 1), ("b", 1), ("c", 2)))
    for name in ("list_attr_celeba.txt", "img_align_celeba/000003.jpg"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
        assert (first / name).read_bytes() != (other / name).read_bytes()


def test_make_celeba_missing_fraction_leaves_rows_without_images(tmp_path: Path) -> None:
    result = read_celeba(make_celeba(tmp_path, identities=20, images_per_identity=5, missing_fraction=0.3))
    assert len(result.records) + result.missing_images == 100
    assert 15 <= result.missing_images <= 45
    assert len(list((tmp_path / "img_align_celeba").iterdir())) == len(result.records)


def test_make_celeba_other_sizes_use_a_sized_folder(tmp_path: Path) -> None:
    make_celeba(tmp_path, identities=2, images_per_identity=1, size=(89, 109))
    assert Image.open(tmp_path / "img_align_celeba_89x109" / "000001.jpg").size == (89, 109)


def test_make_celebahq_copies_the_labels_of_its_celeba_originals(tmp_path: Path) -> None:
    celeba_root = make_celeba(tmp_path / "celeba", identities=4, images_per_identity=3)
    hq_root = make_celebahq(tmp_path / "hq", celeba_root, count=5, size=32)
    originals = {r.path.name: r for r in read_celeba(celeba_root).records}
    mapping_lines = (hq_root / "CelebA-HQ-to-CelebA-mapping.txt").read_text().splitlines()[1:]
    mapping = dict(line.split()[0::2] for line in mapping_lines)
    hq = read_celebahq(hq_root, celeba_root).records
    assert len(hq) == 5
    for record in hq:
        original = originals[mapping[record.path.stem]]
        assert np.array_equal(record.attributes, original.attributes)
        assert Image.open(record.path).size == (32, 32)


def test_make_celebahq_refuses_more_images_than_celeba_rows(tmp_path: Path) -> None:
    celeba_root = make_celeba(tmp_path / "celeba", identities=1, images_per_identity=2)
    with pytest.raises(ValueError, match="count 3"):
        make_celebahq(tmp_path / "hq", celeba_root, count=3)


def test_make_scut_spreads_names_over_the_four_groups(tmp_path: Path) -> None:
    records = read_scut(make_scut(tmp_path, count=22, size=64)).records
    groups = sorted(r.path.name[:2] for r in records)
    assert [groups.count(g) for g in ("AF", "AM", "CF", "CM")] == [8, 8, 3, 3]
    assert all(1.0 <= r.beauty <= 5.0 for r in records)
    assert Image.open(records[0].path).size == (64, 64)


def test_make_scut_score_shows_in_the_eyes(tmp_path: Path) -> None:
    records = read_scut(make_scut(tmp_path, count=40)).records
    # eye whites: the lightest pixels in the eye band of the 224x224 crop
    white = [(np.asarray(Image.open(r.path))[85:112, 70:154].min(axis=2) > 232).sum() for r in records]
    scores = [r.beauty for r in records]
    rank_correlation = np.corrcoef(np.argsort(np.argsort(white)), np.argsort(np.argsort(scores)))[0, 1]
    assert rank_correlation > 0.6


def test_make_csv_writes_rows_the_csv_reader_takes(tmp_path: Path) -> None:
    path = make_csv(tmp_path / "team.csv", tmp_path / "photos", count=30)
    result = read_csv(path)
    assert len(result.records) == 30 and result.missing_images == 0
    assert 5 < sum(r.has_beauty for r in result.records) < 25
    masks = np.stack([r.attribute_mask for r in result.records])
    assert masks[:, ATTRIBUTE_INDEX["Male"]].sum() < 30  # some cells are empty: unknown
    assert not masks[:, ATTRIBUTE_INDEX["Young"]].any()  # not a column
    assert len({r.group for r in result.records}) == 10


def test_make_demo_data_makes_every_source(demo: dict[str, Path]) -> None:
    assert len(read_celeba(demo["celeba"]).records) == 1500
    assert len(read_celebahq(demo["celebahq"], demo["celeba"]).records) == 300
    assert len(read_scut(demo["scut"]).records) == 400
    assert len(read_csv(demo["csv"]).records) == 90


def test_demo_faces_are_learnable_by_a_linear_probe(demo: dict[str, Path]) -> None:
    records = read_celeba(demo["celeba"]).records[:800]
    features = np.stack([np.asarray(Image.open(r.path).reduce(12), dtype=np.float64).ravel() / 255 for r in records])
    features = np.hstack([features, np.ones((len(records), 1))])

    def probe_balanced_accuracy(labels: np.ndarray) -> float:
        """Ridge regression onto +-1 targets, fitted on 600 faces, scored on the other 200."""
        train, test = slice(0, 600), slice(600, None)
        gram = features[train].T @ features[train] + np.eye(features.shape[1])
        weights = np.linalg.solve(gram, features[train].T @ (2 * labels[train] - 1))
        predicted, truth = features[test] @ weights > 0, labels[test] == 1
        return (predicted[truth].mean() + (~predicted[~truth]).mean()) / 2

    for name in ("Male", "Black_Hair", "Mouth_Slightly_Open"):
        labels = np.array([r.attributes[ATTRIBUTE_INDEX[name]] for r in records])
        assert probe_balanced_accuracy(labels) > 0.85, name
        assert probe_balanced_accuracy(np.random.default_rng(0).permutation(labels)) < 0.65  # chance


def test_make_fixtures_tool_passes_its_arguments_and_prints_the_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location("make_fixtures", TOOLS / "make_fixtures.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    calls = []
    monkeypatch.setattr(tool, "make_demo_data",
                        lambda root, seed: calls.append((root, seed)) or {"celeba": Path(root) / "celeba"})
    assert tool.main([str(tmp_path), "--seed", "7"]) == 0
    assert calls == [(str(tmp_path), 7)]
    assert str(tmp_path / "celeba") in capsys.readouterr().out
