"""Sanity checks of the Grad-CAM maps (faceattr.explain.sanity): regions from landmarks, the statistics on a
network whose answer is known, the cascading randomisation, the tool on drawn CelebA faces and on real ones."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from scipy.stats import spearmanr

from drawn_net import LABEL, SIDE, draw, train_tiny
from faceattr.attributes import ATTRIBUTE_INDEX, ATTRIBUTES
from faceattr.data.transforms import eval_transform
from faceattr.errors import ConfigError
from faceattr.explain.gradcam import stage_names
from faceattr.explain.sanity import (
    ALL_RANDOM,
    ATTRIBUTE_REGIONS,
    LayerSanity,
    SanityResult,
    cascade_steps,
    check_maps,
    face_regions,
    frame_to_input,
    load_faces,
    rank_correlations,
    write_report,
)
from faceattr.geometry import CELEBA_CROP
from faceattr.models.net import FaceAttrNet
from faceattr.synthetic.fixtures import make_celeba


#: A face drawn by hand: eyes 20 px apart on y = 30, mouth corners 12 px apart on y = 50.
HAND_LANDMARKS = np.array([[20.0, 30.0], [40.0, 30.0], [30.0, 40.0], [24.0, 50.0], [36.0, 50.0]])
#: Landmarks on the drawn 32 px images: eyes 12 px apart on y = 24, so the upper frame is y < 18,
#: which holds the top-left quadrant where the drawn square lies.
DRAWN_LANDMARKS = np.array([[10.0, 24.0], [22.0, 24.0], [16.0, 26.0], [12.0, 29.0], [20.0, 29.0]])


def test_regions_from_landmarks_by_hand() -> None:
    regions = face_regions(HAND_LANDMARKS, 64)
    # d = 20: eyes +- d/2 across and +- 0.3 d up and down; mouth corners +- d/4; upper frame down to 30 - d/2.
    assert regions == {"eyes": (10.0, 24.0, 50.0, 36.0), "mouth": (19.0, 44.0, 41.0, 56.0),
                       "upper": (0.0, 0.0, 64.0, 20.0)}
    near_the_edge = face_regions(HAND_LANDMARKS - [15.0, 0.0], 64)
    assert near_the_edge["eyes"] == (0.0, 24.0, 35.0, 36.0)  # clipped to the image
    with pytest.raises(ConfigError, match="same point"):
        face_regions(np.array([[20.0, 30.0]] * 5), 64)
    with pytest.raises(ConfigError, match=r"\(5, 2\)"):
        face_regions(HAND_LANDMARKS[:4], 64)


def test_frame_points_land_where_the_evaluation_transform_puts_them() -> None:
    frame = Image.new("RGB", (178, 218))
    ImageDraw.Draw(frame).rectangle((96, 116, 104, 124), fill=(255, 255, 255))  # centred on (100, 120)
    seen = eval_transform(64, CELEBA_CROP)(frame)[0].double()
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    centre = np.array([float((cols * seen).sum() / seen.sum()), float((rows * seen).sum() / seen.sum())])
    expected = frame_to_input(np.array([[100.0, 120.0]]), 64, CELEBA_CROP)[0]
    assert np.abs(centre - expected).max() < 0.3
    # The crop box's outer corners are the input's; the half-size set maps through the full frame.
    corners = frame_to_input(np.array([[8.5, 35.5], [167.5, 194.5]]), 64, CELEBA_CROP)
    np.testing.assert_allclose(corners, [[-0.5, -0.5], [63.5, 63.5]], atol=1e-9)
    np.testing.assert_allclose(frame_to_input(np.array([[49.75, 59.75]]), 64, CELEBA_CROP, (89, 109)),
                               frame_to_input(np.array([[100.0, 120.0]]), 64, CELEBA_CROP), atol=1e-9)


def test_rank_correlations_match_scipy_and_mark_flat_maps() -> None:
    generator = np.random.default_rng(0)
    first = generator.integers(0, 4, (3, 5, 5)).astype(float)  # many ties
    second = first + generator.normal(0, 1, first.shape)
    second[2] = 7.0
    values = rank_correlations(first, torch.from_numpy(second))
    for row in range(2):
        assert values[row] == pytest.approx(spearmanr(first[row].ravel(), second[row].ravel()).statistic)
    assert np.isnan(values[2])
    assert rank_correlations(first[:1], -first[:1])[0] == pytest.approx(-1.0)


def test_cascade_steps_randomise_from_the_top_down() -> None:
    model = FaceAttrNet("resnet10t")
    steps = cascade_steps(model, stage_names(model))
    assert [step for step, _ in steps] == ["heads", "backbone.layer4", "backbone.layer3", "backbone.layer2",
                                           "backbone.layer1", ALL_RANDOM]
    keys = [set(randomised) for _, randomised in steps]
    assert all(before < after for before, after in zip(keys, keys[1:]))  # each step adds to the last
    assert keys[0] and not any(key.startswith("backbone.") for key in keys[0])
    assert keys[-1] == set(model.state_dict())
    assert {key.split(".")[1] for key in keys[-1] - keys[-2]} >= {"conv1"}  # the stem comes last


def test_the_checks_find_the_known_answer_of_the_drawn_network() -> None:
    model = train_tiny(0).train()
    images, drawn = draw(48, torch.Generator().manual_seed(7))
    labels = np.zeros((len(images), len(ATTRIBUTES)), np.float32)
    labels[:, ATTRIBUTE_INDEX[LABEL]] = drawn.numpy()
    result = check_maps(model, images, labels, np.repeat(DRAWN_LANDMARKS[None], len(images), 0), [-1],
                        cascade_faces=16, batch_size=20)
    assert model.training and not model.backbone.layer4._forward_hooks  # left as it was
    assert list(result.layers) == ["backbone.layer4"] and result.layers["backbone.layer4"].map_side == SIDE // 2
    (row,) = [row for row in result.region_rows() if row["attribute"] == LABEL]
    assert row["region"] == "upper" and row["faces"] == 24
    assert row["uniform"] == pytest.approx(18 / 32)  # the upper frame is the top 18 rows
    assert row["own"] > 0.85 and row["wins"] > 0.5  # the square is all in the upper frame
    steps = {step["step"]: step for step in result.randomisation_rows()}
    assert list(steps) == ["heads", "backbone.layer4", ALL_RANDOM]
    assert steps["heads"]["faces"] == 16 and steps[ALL_RANDOM]["faces"] == 48
    # Untrained, the network does not look for the square: its maps rank the pixels otherwise.
    assert steps[ALL_RANDOM]["mean"] < 0.5
    with pytest.raises(ConfigError, match="landmarks"):
        check_maps(model, images, labels, DRAWN_LANDMARKS, [-1])


def _hand_result() -> SanityResult:
    """Two faces, shares set by hand: Smiling's maps hold 0.4 and 0.1 of the mouth, the other regions' 0.2."""
    labels = np.zeros((2, len(ATTRIBUTES)), np.float32)
    labels[:, ATTRIBUTE_INDEX["Smiling"]] = 1
    shares = {name: np.full((2, 3), 0.2) for name in ATTRIBUTE_REGIONS}
    shares["Smiling"] = np.array([[0.0, 0.4, 0.0], [0.0, 0.1, 0.0]])
    shares["Wearing_Lipstick"] = np.full((2, 3), 0.9)  # same region: not one of Smiling's "others"
    randomised = {ALL_RANDOM: {name: np.array([0.5, np.nan]) for name in ATTRIBUTE_REGIONS}}
    return SanityResult(labels, ["eyes", "mouth", "upper"], np.full((2, 3), 0.05),
                        {"backbone.layer3": LayerSanity(4, shares, randomised)})


def test_region_rows_compare_with_the_other_regions_attributes_and_the_report_is_written(tmp_path: Path) -> None:
    result = _hand_result()
    (row,) = [row for row in result.region_rows() if row["attribute"] == "Smiling"]
    assert row == {"layer": "backbone.layer3", "attribute": "Smiling", "region": "mouth", "faces": 2,
                   "own": pytest.approx(0.25), "others": pytest.approx(0.2), "uniform": pytest.approx(0.05),
                   "wins": 0.5}
    assert [row["faces"] for row in result.region_rows() if row["attribute"] == "Bangs"] == [0]
    (randomised,) = result.randomisation_rows()
    assert randomised["mean"] == pytest.approx(0.5) and randomised["flat"] == pytest.approx(0.5)
    paths = write_report(result, tmp_path, extra={"faces": 2})
    assert [path.name for path in paths] == ["explanations.md", "explanations.json", "explanations.png"]
    expected_line = "| backbone.layer3 | 4x4 | Smiling | mouth | 2 | 0.250 | 0.200 | 0.050 | 5.00 | 50% |"
    assert expected_line in paths[0].read_text()
    assert json.loads(paths[1].read_text())["faces"] == 2
    assert write_report(result, tmp_path) == paths  # a rerun replaces its report whole
    assert "faces" not in json.loads(paths[1].read_text())


def test_tool_on_drawn_celeba_faces(tmp_path: Path, run_tool: Callable, checkpoint: Path) -> None:
    root = make_celeba(tmp_path / "celeba", identities=10, images_per_identity=2, seed=3)
    out = tmp_path / "report"
    run = run_tool("check_explanations", root, "--model", checkpoint, "--no-detector", "--layers",
                   "backbone.layer4,-2", "--cascade", "2", "--out", out)
    assert run.status == 0, run.err
    record = json.loads((out / "explanations.json").read_text())
    assert record["faces"] >= 1 and record["mtcnn_landmarks"] == 0
    assert record["map_sides"] == {"backbone.layer4": 2, "backbone.layer3": 4}
    assert (out / "explanations.png").stat().st_size > 0 and "| layer | map |" in run.out
    refused = run_tool("check_explanations", root, "--layers", "layer9", "--model", checkpoint, "--out",
                       tmp_path / "bad")
    assert refused.status == 1 and "--layers: Grad-CAM layer 'layer9' is not a module" in refused.err
    assert not (tmp_path / "bad").exists()


def test_real_celeba_maps_look_at_the_mouth_and_die_with_the_weights(shared_data: Path) -> None:
    from faceattr.data.readers.celeba import read_celeba
    from faceattr.inference.detect import FaceDetector
    from faceattr.models.deployed import DeployedModel

    records = sorted((r for r in read_celeba(shared_data / "celeba").records if r.split == "val"),
                     key=lambda record: str(record.path))[:40]
    model = DeployedModel.load(None)
    faces = load_faces([r.path for r in records], np.array([r.attributes for r in records]), model.image_size,
                       model.crop, FaceDetector(min_face_size=60))
    assert faces.detected.mean() > 0.9 and np.nanmedian(faces.template_distance) < 3.0
    result = check_maps(model.build_network(), faces.images, faces.labels, faces.landmarks, [-1])
    rows = {row["attribute"]: row for row in result.region_rows()}
    for attribute in ("Smiling", "Wearing_Lipstick"):  # present on about half of the faces
        assert rows[attribute]["own"] > 1.3 * rows[attribute]["uniform"]
        assert rows[attribute]["own"] > rows[attribute]["others"]
    (untrained,) = result.randomisation_rows()
    assert untrained["mean"] < 0.5
