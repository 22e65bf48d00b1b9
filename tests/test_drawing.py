"""Tests of the drawn faces: each label shows where its feature is, and labels follow CelebA's rates."""

from __future__ import annotations

import numpy as np
import pytest

from faceattr.synthetic.drawing import (
    HAIR_COLOURS,
    SCUT_GEOMETRY,
    draw_face,
    random_labels,
)

WOMAN = {"No_Beard": True, "Young": True, "Brown_Hair": True}
MAN = {"Male": True, "No_Beard": True, "Young": True, "Brown_Hair": True}


def pixels(labels: dict[str, bool], seed: int = 3) -> np.ndarray:
    return np.asarray(draw_face(labels, rng=np.random.default_rng(seed)), dtype=np.int16)


def changed(base: dict[str, bool], attribute: str) -> np.ndarray:
    """Where the face with ``attribute`` differs from the same face without it: (H, W) bool."""
    return np.abs(pixels({**base, attribute: True}) - pixels(base)).sum(axis=2) > 30


def test_draw_face_is_deterministic_given_the_generator() -> None:
    labels = {"Smiling": True, "Eyeglasses": True}
    assert np.array_equal(pixels(labels, seed=5), pixels(labels, seed=5))
    assert not np.array_equal(pixels(labels, seed=5), pixels(labels, seed=6))


def test_draw_face_has_celeba_aligned_size_and_resizes() -> None:
    assert draw_face(WOMAN).size == (178, 218)
    assert draw_face(WOMAN, size=(89, 109)).size == (89, 109)


def test_draw_face_draws_on_the_canvas_of_its_geometry() -> None:
    assert draw_face(WOMAN, geometry=SCUT_GEOMETRY).size == (224, 224)
    assert draw_face(WOMAN, size=(32, 32), geometry=SCUT_GEOMETRY).size == (32, 32)


def test_draw_face_rejects_unknown_attribute_names() -> None:
    with pytest.raises(ValueError, match="Smiley"):
        draw_face({"Smiley": True})


# (attribute, base labels, region (left, top, right, bottom) of CelebA's 178x218 crop where it shows)
VISIBLE = [
    ("Eyeglasses", WOMAN, (35, 92, 145, 130)),
    ("Smiling", WOMAN, (60, 130, 120, 172)),
    ("Mouth_Slightly_Open", WOMAN, (60, 130, 120, 172)),
    ("Wearing_Lipstick", WOMAN, (60, 135, 120, 170)),
    ("Mustache", MAN, (65, 135, 115, 158)),
    ("Goatee", MAN, (75, 155, 105, 187)),
    ("Bangs", WOMAN, (45, 62, 133, 102)),
    ("Wearing_Hat", WOMAN, (0, 25, 178, 95)),
    ("Pale_Skin", WOMAN, (30, 55, 150, 218)),
]


@pytest.mark.parametrize(("attribute", "base", "region"), VISIBLE, ids=[v[0] for v in VISIBLE])
def test_a_label_changes_the_face_only_where_its_feature_is(attribute: str, base: dict, region: tuple) -> None:
    diff = changed(base, attribute)
    left, top, right, bottom = region
    assert diff.sum() > 40, "the feature should be visible"
    assert diff[top:bottom, left:right].sum() >= 0.97 * diff.sum()


def test_bald_removes_the_hair_above_the_forehead() -> None:
    diff = changed(MAN, "Bald")
    assert diff[30:80].sum() > 300
    assert diff[120:218, 60:120].sum() == 0  # the mouth and chin stay the same


def test_hair_colour_labels_set_the_hair_colour() -> None:
    blond, black = pixels({**WOMAN, "Brown_Hair": False, "Blond_Hair": True}), pixels({**WOMAN, "Brown_Hair": False,
                                                                                      "Black_Hair": True})
    assert blond[56:64, 70:108].mean() > black[56:64, 70:108].mean() + 100  # the top of the head
    assert np.array_equal(blond[:40], black[:40])  # the background above it


def test_men_have_short_hair_and_women_long_hair() -> None:
    diff = changed(WOMAN, "Male")
    assert diff[180:218, :40].sum() + diff[180:218, 138:].sum() > 200  # hair down to the shoulders


def test_random_labels_follow_celeba_rates_and_stay_consistent() -> None:
    rng = np.random.default_rng(0)
    faces = [random_labels(rng) for _ in range(3000)]
    assert abs(np.mean([face["Male"] for face in faces]) - 0.42) < 0.03
    women = [face for face in faces if not face["Male"]]
    assert not any(face["Goatee"] or face["Mustache"] or not face["No_Beard"] for face in women)
    assert all(sum(face[colour] for colour in HAIR_COLOURS) <= 1 for face in faces)
    assert not any(face["Bald"] and face["Bangs"] for face in faces)
