"""Tests of faceattr.evaluation.subgroups and tools/measure_subgroups.py: one attribute's errors within labelled groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from faceattr.attributes import ATTRIBUTES
from faceattr.config import Config, SourceConfig
from faceattr.data.readers.celeba import read_celeba
from faceattr.errors import DatasetError
from faceattr.evaluation.subgroups import group_error_rates, read_group_labels
from faceattr.inference.predictor import Predictor
from faceattr.models.deployed import DeployedModel
from faceattr.models.net import FaceAttrNet
from faceattr.models.weights_io import save_checkpoint

MALE = ATTRIBUTES.index("Male")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_group_labels_skip_comments_and_key_by_source_and_image(tmp_path: Path) -> None:
    path = write(tmp_path / "hair.csv", "# labelled by eye\nimage,source,hair\n000001.jpg,celeba:img_align_celeba,short\n"
                                        "# a note\n12.jpg,celebahq,long\n")
    assert read_group_labels(path) == {("celeba:img_align_celeba", "000001.jpg"): "short", ("celebahq", "12.jpg"): "long"}


@pytest.mark.parametrize(("text", "message"), [
    ("image,hair\n1.jpg,short\n", "line 1: the header must be image,source,GROUP"),
    ("# only a comment\n", "no header line"),
    ("image,source,hair\n1.jpg,celebahq\n", "line 2: expected 3 non-empty fields"),
    ("image,source,hair\n1.jpg,celebahq,\n", "line 2: expected 3 non-empty fields"),
    ("# note\nimage,source,hair\n1.jpg,celebahq,short\n1.jpg,celebahq,long\n", "line 4: 1.jpg of celebahq is listed twice"),
])
def test_bad_group_files_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "groups.csv", text)
    with pytest.raises(DatasetError, match=message) as error:
        read_group_labels(path)
    assert "groups.csv" in str(error.value)


def test_error_rates_count_disagreements_per_source_and_group_over_known_labels() -> None:
    decided = np.array([True, False, True, True, False])
    probs = np.array([0.9, 0.1, 0.6, 0.8, 0.3])
    labels = np.array([0, 0, 1, 0, 1])
    mask = np.array([True, True, True, True, False])
    keys = [("a", "1"), ("a", "2"), ("a", "3"), ("b", "1"), ("a", "4")]
    groups = {("a", "1"): "short", ("a", "2"): "short", ("a", "3"): "long", ("b", "1"): "short", ("a", "4"): "long"}
    rows = group_error_rates(decided, probs, labels, mask, keys, groups)
    assert [(r["source"], r["group"], r["faces"], r["errors"], r["error_rate"]) for r in rows] == [
        ("a", "long", 1, 0, 0.0), ("a", "short", 2, 1, 0.5), ("b", "short", 1, 1, 1.0)]
    assert rows[1]["mean_probability"] == pytest.approx(0.5) and rows[0]["label_rate"] == 1.0


def test_tool_scores_the_models_own_decisions_on_the_listed_validation_faces(run_tool, celeba_root: Path,
                                                                            tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = Config()
    config.data.image_size, config.data.batch_size, config.data.workers = 64, 4, 0
    config.data.sources = [SourceConfig(kind="celeba", root=str(celeba_root))]
    model = DeployedModel.from_training(FaceAttrNet("resnet10t"), [0.5] * 40, config, 0, {})
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(model.to_checkpoint(), checkpoint)
    predictor = Predictor(checkpoint, device="cpu")
    val = [record for record in read_celeba(celeba_root).records if record.split == "val"]
    faces = predictor.predict_aligned([record.path for record in val])
    groups = ["short" if i % 2 else "long" for i in range(len(val))]
    lines = [f"{record.path.name},celeba,{group}" for record, group in zip(val, groups)]
    groups_file = write(tmp_path / "groups.csv", "image,source,hair\n" + "\n".join(lines) + "\n")
    result = run_tool("measure_subgroups", checkpoint, "--groups", groups_file, "--out", tmp_path / "out")
    assert result.status == 0, result.err
    expected = {}
    for record, face, group in zip(val, faces, groups):
        wrong = ("Male" in face.attributes) != bool(record.attributes[MALE])
        faces_so_far, errors = expected.get(group, (0, 0))
        expected[group] = (faces_so_far + 1, errors + wrong)
    for group, (count, errors) in expected.items():
        assert f"| celeba | {group} | {count} | {errors} | {errors / count:.3f} |" in result.out
    assert (tmp_path / "out" / "subgroups.md").is_file()
    unknown = write(tmp_path / "other.csv", "image,source,hair\n000001.jpg,scut,short\n")
    refused = run_tool("measure_subgroups", checkpoint, "--groups", unknown)
    assert refused.status == 2 and "scut" in refused.err
