"""The default model installed with the package: present, intact, and right where it is reliably right."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import faceattr
from faceattr.attributes import ATTRIBUTE_INDEX
from faceattr.geometry import CELEBA_CROP
from faceattr.models.deployed import (
    DEFAULT_MODEL,
    FORMAT,
    DeployedModel,
    decision_digest,
    description_path,
)
from faceattr.models.weights_io import sha256_of
from faceattr.training.export import MAX_WEIGHTS_BYTES

ASTRONAUT = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


def test_default_model_is_installed_small_and_intact() -> None:
    assert 0 < DEFAULT_MODEL.stat().st_size <= MAX_WEIGHTS_BYTES
    description = json.loads(description_path(DEFAULT_MODEL).read_text())
    assert description["format"] == FORMAT
    assert description["sha256"] == sha256_of(DEFAULT_MODEL)
    assert description["decision_sha256"] == decision_digest(description)
    model = DeployedModel.load()
    assert model.source == DEFAULT_MODEL and model.crop == CELEBA_CROP and model.image_size == 64
    assert len(model.thresholds) == len(model.temperatures) == len(model.offsets) == 40
    assert model.metrics["attribute_means"]["balanced_accuracy"] > 0.75  # the validation figures travel with it


def test_default_model_finds_the_astronaut_and_her_smile() -> None:
    faces = faceattr.predict(ASTRONAUT)
    assert len(faces) == 1
    face = faces[0]
    x1, y1, x2, y2 = face.box
    assert x1 < 224 < x2 and y1 < 120 < y2  # the face is at about (224, 120) of the 512 px portrait
    assert "Smiling" in face.attributes and 1.0 <= face.beauty <= 5.0


@pytest.mark.real_data
def test_default_model_on_celeba_validation_crops(shared_data: Path) -> None:
    """Male and Smiling, the most reliable attributes, on 120 aligned crops of CelebA's validation partition."""
    celeba = shared_data / "celeba"
    partition = dict(line.split() for line in (celeba / "list_eval_partition.txt").read_text().splitlines())
    names = sorted(p.name for p in (celeba / "img_align_celeba").iterdir() if partition.get(p.name) == "1")[:120]
    rows = {line.split()[0]: line.split()[1:] for line in
            (celeba / "list_attr_celeba.txt").read_text().splitlines()[2:] if line.split()[0] in set(names)}
    results = faceattr.load_model(device="cpu").predict_many([celeba / "img_align_celeba" / n for n in names],
                                                             aligned=True)
    for attribute in ("Male", "Smiling"):
        truth = np.array([rows[n][ATTRIBUTE_INDEX[attribute]] == "1" for n in names])
        said = np.array([attribute in r.faces[0].attributes for r in results])
        balanced = (np.mean(said[truth]) + np.mean(~said[~truth])) / 2
        assert balanced > 0.85, attribute
