"""The rated images of the sparsity analysis (faceattr.explain.rated_images) and ``faceattr analyze sparsity``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from faceattr.cli import EXIT_OK, EXIT_USAGE, main
from faceattr.config import Config, SourceConfig
from faceattr.errors import ConfigError, DatasetError
from faceattr.explain.rated_images import RatedImages, read_ratings_csv, scut_rated_images
from faceattr.models.deployed import DeployedModel
from faceattr.models.net import FaceAttrNet
from faceattr.models.weights_io import save_checkpoint
from faceattr.synthetic.fixtures import make_scut
from tests.conftest import untrained_checkpoint

FAST = ["--repeats", "1", "--folds", "3", "--batch-size", "8"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Four drawn images, one in a subfolder."""
    (tmp_path / "paintings").mkdir()
    for index, name in enumerate(["a.png", "b.jpg", "c.png", "paintings/d.png"]):
        Image.new("RGB", (40, 30), (60 * index, 90, 200)).save(tmp_path / name)
    return tmp_path


def write_csv(folder: Path, text: str) -> Path:
    path = folder / "ratings.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_ratings_csv_gives_images_and_ratings_in_its_order(folder):
    ratings = write_csv(folder, "\ufefftitle,rating,image\nOne,4.5,a.png\n\nTwo,1e0,paintings/d.png\nThree,-2,c.png\n")
    rated = read_ratings_csv(ratings)
    assert rated.paths == [folder / "a.png", folder / "paintings" / "d.png", folder / "c.png"]
    assert rated.ratings.tolist() == [4.5, 1.0, -2.0] and not rated.scut
    elsewhere = folder / "lists"
    elsewhere.mkdir()
    moved = elsewhere / "ratings.csv"
    moved.write_text("image,rating\na.png,1\nb.jpg,2\n")
    assert read_ratings_csv(moved, folder).paths == [folder / "a.png", folder / "b.jpg"]


@pytest.mark.parametrize(("text", "line", "message"), [
    ("name,rating\na.png,1\n", 1, r"must name the columns \['image', 'rating'\]; \['image'\] not in"),
    ("image,rating\na.png,1\nb.jpg,2\n./a.png,3\n", 4, r"'./a.png' is listed twice \(first on line 2\)"),
    ("image,rating\na.png,1\nmissing.png,2\n", 3, "'missing.png' not found in"),
    ("image,rating\na.png,1\nnot_an_image.jpg,2\n", 3, "'not_an_image.jpg': not a readable image"),
    ("image,rating\na.png,1\nb.jpg,beautiful\n", 3, "rating 'beautiful' is not a finite number"),
    ("image,rating\na.png,nan\n", 2, "rating 'nan' is not a finite number"),
    ("image,rating\na.png,1\n,2\n", 3, "the image is empty"),
    ("image,rating,title\na.png,1,x\nb.jpg\n", 3, "expected 3 fields, got 1"),
])
def test_each_bad_ratings_csv_is_refused_with_its_file_and_line(folder, text, line, message):
    (folder / "not_an_image.jpg").write_text("hello")
    ratings = write_csv(folder, text)
    with pytest.raises(DatasetError, match=message) as refused:
        read_ratings_csv(ratings)
    assert refused.value.path == ratings and refused.value.line == line
    assert str(refused.value).startswith(f"{ratings}, line {line}: ")


def test_a_ratings_csv_needs_two_images(folder):
    with pytest.raises(DatasetError, match="1 rated image"):
        read_ratings_csv(write_csv(folder, "image,rating\na.png,1\n"))
    with pytest.raises(DatasetError, match="cannot read the ratings"):
        read_ratings_csv(folder / "none.csv")


def test_scut_faces_are_drawn_and_held_out_by_the_models_folds(tmp_path):
    root = make_scut(tmp_path / "scut", count=30, size=16)
    every = scut_rated_images(root)
    assert len(every.paths) == 30 and every.scut and every.paths == sorted(every.paths)
    held_out = scut_rated_images(root, {"kind": "scut", "folds": 5, "fold": 2}, held_out=True)
    assert len(held_out.paths) == 6 and set(held_out.paths) < set(every.paths)
    drawn = every.drawn(10)
    assert len(drawn.paths) == 10 and drawn.paths == sorted(drawn.paths) and drawn.scut
    assert drawn.paths == every.drawn(10).paths  # seeded
    assert {path.name[:2] for path in drawn.paths} > {"AF"}  # a draw, not the first group
    assert every.drawn(100) is every
    with pytest.raises(ConfigError, match="at least 2"):
        every.drawn(1)
    with pytest.raises(ConfigError, match="not trained on SCUT"):
        scut_rated_images(root, {}, held_out=True)


def scut_trained_checkpoint(path: Path, image_size: int, crop: list[float]) -> Path:
    """An untrained ResNet-10-T whose config reads SCUT at ``image_size`` with ``crop``."""
    torch.manual_seed(7)
    config = Config()
    config.data.image_size = image_size
    config.data.sources = [SourceConfig(kind="scut", crop=crop, folds=5, fold=1)]
    save_checkpoint(DeployedModel.from_training(FaceAttrNet("resnet10t"), [0.5] * 40, config, 0, {}).to_checkpoint(),
                    path)
    return path


def test_the_command_on_a_drawn_scut_folder_compares_networks_with_their_own_input(tmp_path, capsys):
    root = make_scut(tmp_path / "scut", count=30, size=64)
    model = untrained_checkpoint(tmp_path / "model.pt")
    other = scut_trained_checkpoint(tmp_path / "other.pt", 32, [0.1, 0.05, 0.9, 0.95])
    out = tmp_path / "out"
    status = main(["analyze", "sparsity", str(root), "--model", str(model), "--compare", f"beauty_only={other}",
                   "--limit", "24", *FAST, "--out", str(out)])
    printed = capsys.readouterr()
    assert status == EXIT_OK, printed.err
    figures = json.loads((out / "report.json").read_text())
    assert figures["images"] == 24 and figures["folds"] == 3
    assert list(figures["networks"]) == ["trained", "untrained", "beauty_only"]
    compared = figures["networks"]["beauty_only"]
    assert (compared["image_size"], compared["crop"], compared["model"]) == (32, [0.1, 0.05, 0.9, 0.95], str(other))
    assert figures["networks"]["trained"]["crop"] is None  # its config has no SCUT source: the whole image
    assert {"embedding L1", "embedding L2"} <= set(compared["families"])
    assert (out / "r2_families.png").stat().st_size > 0 and "24 images, 3 networks" in printed.out
    # A second run into the same folder is refused before any work: the report is the user's now.
    assert main(["analyze", "sparsity", str(root), "--model", str(model), "--out", str(out)]) == EXIT_USAGE
    assert "already holds ['report.md'" in capsys.readouterr().err
    held_out = main(["analyze", "sparsity", str(root), "--model", str(other), "--held-out", "--no-untrained", *FAST,
                     "--out", str(tmp_path / "held")])
    assert held_out == EXIT_OK
    assert json.loads((tmp_path / "held" / "report.json").read_text())["images"] == 6  # fold 1 of 5


@pytest.mark.parametrize(("arguments", "message"), [
    (["--compare", "trained=x.pt"], "are taken"),
    (["--compare", "a=x.pt", "--compare", "a=y.pt"], "or repeated"),
    (["--compare", "no-model"], "expected NAME=MODEL"),
    (["--held-out"], "not trained on SCUT"),
    (["--limit", "1"], "limit must be at least 2"),
])
def test_the_command_refuses_bad_arguments(tmp_path, capsys, arguments, message):
    root = make_scut(tmp_path / "scut", count=8, size=16)
    model = untrained_checkpoint(tmp_path / "model.pt")
    status = main(["analyze", "sparsity", str(root), "--model", str(model), "--out", str(tmp_path / "out"),
                   *arguments])
    assert status == EXIT_USAGE and message in capsys.readouterr().err
    assert not (tmp_path / "out" / "report.md").exists()


def test_the_command_on_a_folder_with_a_ratings_csv(folder, tmp_path, capsys):
    images = folder / "more"
    images.mkdir()
    rng = np.random.default_rng(0)
    rows = ["image,rating"]
    for index in range(12):
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(images / f"p{index}.png")
        rows.append(f"p{index}.png,{rng.uniform(1, 7):.2f}")
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("\n".join(rows) + "\n")
    model = untrained_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "out"
    status = main(["analyze", "sparsity", str(images), "--ratings", str(ratings), "--model", str(model), *FAST,
                   "--out", str(out)])
    assert status == EXIT_OK, capsys.readouterr().err
    figures = json.loads((out / "report.json").read_text())
    assert figures["images"] == 12 and figures["networks"]["trained"]["crop"] is None
    bad = tmp_path / "bad.csv"
    bad.write_text("image,rating\np0.png,3\np1.png,\n")
    assert main(["analyze", "sparsity", str(images), "--ratings", str(bad), "--model", str(model)]) == EXIT_USAGE
    assert f"{bad}, line 3: rating '' is not a finite number" in capsys.readouterr().err
    refused = main(["analyze", "sparsity", str(images), "--ratings", str(ratings), "--model", str(model),
                    "--held-out", "--out", str(tmp_path / "other")])
    assert refused == EXIT_USAGE and "SCUT-FBP5500 only" in capsys.readouterr().err


@pytest.mark.real_data
def test_the_command_on_real_scut_with_the_installed_model(shared_data, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["analyze", "sparsity", str(shared_data / "scut_fbp5500"), "--limit", "40", *FAST,
                   "--out", str(out)])
    assert status == EXIT_OK, capsys.readouterr().err
    figures = json.loads((out / "report.json").read_text())
    assert figures["images"] == 40 and len(figures["layers"]) == 9  # ResNet-18: the stem and 8 blocks
    assert figures["networks"]["trained"]["embedding_size"] == 512
    assert all(np.isfinite(family["r2"]) for family in figures["networks"]["trained"]["families"].values())


def test_rated_images_keep_their_order_when_all_are_drawn():
    rated = RatedImages([Path("b"), Path("a"), Path("c")], np.array([1.0, 2.0, 3.0]))
    assert rated.drawn(None) is rated and rated.drawn(3) is rated
    assert rated.drawn(2).ratings.tolist() in ([1.0, 2.0], [1.0, 3.0], [2.0, 3.0])
