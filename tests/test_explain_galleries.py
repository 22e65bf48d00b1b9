"""Error galleries in the evaluation report: drawn from the evaluated images only, linked from report.md."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceattr.attributes import ATTRIBUTES
from faceattr.data.loader import build_data
from faceattr.evaluation.evaluate import evaluate_checkpoint
from faceattr.explain.galleries import draw_galleries, gallery_tiles
from faceattr.synthetic.fixtures import make_celeba, make_scut

from conftest import untrained_checkpoint


@pytest.fixture(scope="module")
def drawn_data(tmp_path_factory):
    """An untrained 64 px model and the overrides pointing it at drawn CelebA and SCUT faces."""
    root = tmp_path_factory.mktemp("galleries")
    make_celeba(root / "celeba", identities=12, images_per_identity=3, seed=5)
    make_scut(root / "scut", count=30, size=32, seed=5)
    sources = [{"kind": "celeba", "root": str(root / "celeba")}, {"kind": "scut", "root": str(root / "scut"),
                                                                   "folds": 3}]
    overrides = [f"data.sources={json.dumps(sources)}", "data.batch_size=8", "data.workers=0", "train.amp=false"]
    return untrained_checkpoint(root / "best.pt"), overrides


def validation_paths(checkpoint: Path, overrides: list[str]) -> set[str]:
    from faceattr.config import config_from_dict
    from faceattr.data.dataset import dataset_records
    from faceattr.models.deployed import DeployedModel

    config = config_from_dict(DeployedModel.load(checkpoint).config, overrides)
    return {str(record.path) for record in dataset_records(build_data(config.data).val)}


def test_eval_tool_draws_a_gallery_per_attribute_with_errors_and_for_beauty_from_validation_images_only(
        drawn_data, tmp_path, run_tool):
    checkpoint, overrides = drawn_data
    result = run_tool("eval", checkpoint, *overrides, "--out", tmp_path, "--device", "cpu", "--galleries", "3")
    assert result.status == 0, result.err
    report = json.loads((tmp_path / "report.json").read_text())
    galleries = report["galleries"]
    assert galleries["size"] == 3 and set(galleries["attributes"]) == set(ATTRIBUTES)
    shown = [item for kinds in galleries["attributes"].values() for rows in kinds.values() for item in rows]
    shown += [item for rows in galleries["beauty"].values() for item in rows]
    assert shown and {item["path"] for item in shown} <= validation_paths(checkpoint, overrides)
    assert all(len(rows) <= 3 for kinds in galleries["attributes"].values() for rows in kinds.values())
    markdown = (tmp_path / "report.md").read_text()
    drawn = sorted(path.stem for path in (tmp_path / "galleries").glob("*.png"))
    assert drawn == sorted(gallery_tiles(galleries))  # every attribute with an error, and beauty
    assert "beauty" in drawn and f"[errors](galleries/{drawn[0]}.png)" in markdown
    assert "](galleries/beauty.png)" in markdown and "### Error by predicted-score decile" in markdown
    with Image.open(tmp_path / "galleries" / "beauty.png") as sheet:
        assert sheet.format == "PNG" and sheet.mode == "P" and sheet.width >= 3 * 128 and sheet.height > 3 * 128
    # The counts of each attribute's confusion matrix add up to its known labels.
    for name in ATTRIBUTES:
        assert sum(report["confusion"][name].values()) == report["attributes"][name]["count"]


def test_each_source_has_its_own_galleries_and_none_are_drawn_when_asked_for_none(drawn_data, tmp_path, run_tool):
    checkpoint, overrides = drawn_data
    assert run_tool("eval", checkpoint, *overrides, "--each-source", "--out", tmp_path / "each", "--device", "cpu",
                    "--galleries", "2").status == 0
    assert (tmp_path / "each" / "source1" / "galleries" / "beauty.png").is_file()
    assert not (tmp_path / "each" / "source0" / "galleries" / "beauty.png").exists()  # CelebA has no ratings
    assert any((tmp_path / "each" / "source0" / "galleries").glob("*.png"))
    assert run_tool("eval", checkpoint, *overrides, "--out", tmp_path / "none", "--device", "cpu",
                    "--galleries", "0").status == 0
    assert not (tmp_path / "none" / "galleries").exists()
    assert json.loads((tmp_path / "none" / "report.json").read_text())["galleries"] is None
    assert run_tool("eval", checkpoint, "--galleries", "-1", "--out", tmp_path / "bad").status == 2


def test_each_tile_is_the_evaluated_crop_under_its_map(drawn_data, tmp_path):
    """The drawer gets the evaluated dataset itself: item ``row`` is the image the model scored as that row."""
    import torch

    checkpoint, overrides = drawn_data
    scored = {}

    def spy(model, images, galleries, out, device):
        items = [item for rows in galleries["beauty"].values() for item in rows]
        crops = torch.stack([images[item["row"]]["image"] for item in items])
        with torch.no_grad():
            scored["again"] = model.build_network().eval()(crops)["beauty"].tolist()
        scored["stored"] = [item["predicted"] for item in items]
        scored["crop"] = crops[0].numpy()
        return draw_galleries(model, images, galleries, out, device)

    evaluation, paths = evaluate_checkpoint(checkpoint, overrides, tmp_path, "cpu", ["scut"], 2, spy)
    assert paths["gallery_beauty"] == tmp_path / "galleries" / "beauty.png"
    assert evaluation["galleries"]["beauty"]["highest"][0]["predicted"] == max(
        evaluation["beauty_predictions"]["predicted"])
    assert scored["again"] == pytest.approx(scored["stored"], abs=1e-4)
    assert scored["crop"].shape == (3, 64, 64) and scored["crop"].dtype == np.uint8


def test_beauty_tiles_map_what_lowers_the_score_for_the_lowest_and_the_under_predicted():
    def item(row, predicted, target):
        return {"row": row, "path": f"{row}.jpg", "predicted": predicted, "target": target}

    section = {"size": 2, "attributes": {"Bald": {"false_positives": [], "false_negatives": []}},
               "beauty": {"highest": [item(0, 4.5, 4.0)], "lowest": [item(1, 1.5, 2.0)],
                          "largest_errors": [item(2, 4.0, 2.0), item(3, 2.0, 4.0)]}}
    sheets = gallery_tiles(section)
    assert list(sheets) == ["beauty"]  # an attribute without errors gets no gallery
    assert [[target for _, target, _ in tiles] for _, tiles in sheets["beauty"]] == [
        ["beauty"], ["-beauty"], ["beauty", "-beauty"]]


def test_the_lowering_map_is_the_map_of_the_negated_score():
    import torch

    from faceattr.explain.galleries import _LoweringBeauty
    from faceattr.explain.gradcam import grad_cam
    from faceattr.models.net import FaceAttrNet

    torch.manual_seed(0)
    network = FaceAttrNet("resnet10t")
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    lowering = grad_cam(_LoweringBeauty(network), images, ["beauty"])["beauty"]
    raising = grad_cam(network, images, ["beauty"])["beauty"]
    assert lowering.shape == raising.shape == (3, 64, 64)
    # Grad-CAM's weights change sign with the score: what one map keeps, the other drops.
    assert not torch.allclose(lowering, raising)
    assert _LoweringBeauty(network).eval()(images)["beauty"].tolist() == pytest.approx(
        (-network.eval()(images)["beauty"]).tolist())


@pytest.mark.slow
def test_default_model_galleries_on_real_validation_images(shared_data, tmp_path, monkeypatch):
    """The default model on 200 real validation images: every gallery face is one of them, every sheet drawn."""
    from faceattr.models.deployed import DeployedModel

    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the stored config's data roots are relative to it
    checkpoint = DeployedModel.path_of(None)
    overrides = ["data.max_val_samples=200", "data.preload=false"]
    evaluation, paths = evaluate_checkpoint(checkpoint, overrides, tmp_path, "cpu", gallery_size=4,
                                            draw_galleries=draw_galleries)
    shown = {item["path"] for kinds in evaluation["galleries"]["attributes"].values() for rows in kinds.values()
             for item in rows} | {item["path"] for rows in evaluation["galleries"]["beauty"].values() for item in rows}
    assert shown <= validation_paths(checkpoint, overrides)
    assert {key for key in paths if key.startswith("gallery_")} == {
        f"gallery_{target}" for target in gallery_tiles(evaluation["galleries"])}
