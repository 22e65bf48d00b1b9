"""Grad-CAM: the target layer of every backbone, maps with a known answer, hooks always released,
the model left as it was, and the maps carried back onto the photo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from drawn_net import LABEL, SIDE, TOP_LEFT, TinyNet, mean_rank_correlation, positives, trained
from faceattr.attributes import ATTRIBUTE_INDEX
from faceattr.errors import ConfigError
from faceattr.explain.gradcam import (
    grad_cam,
    normalise_maps,
    region_share,
    stage_names,
    target_layer,
    warp_to_photo,
)
from faceattr.models import BACKBONES
from faceattr.models.net import FaceAttrNet

__all__ = ["positives", "trained"]  # fixtures, imported for pytest

def test_trained_model_looks_where_the_label_lives(trained: tuple[TinyNet, TinyNet], positives: Tensor) -> None:
    model, _ = trained
    with torch.no_grad():
        accuracy = ((model(positives)["attributes"][:, ATTRIBUTE_INDEX[LABEL]] > 0).float().mean())
    assert accuracy > 0.9, "the fixture network did not learn its label"
    maps = grad_cam(model, positives, [LABEL])[LABEL]
    shares = [region_share(cam, TOP_LEFT) for cam in maps]
    # A quarter of the image by chance; the evidence is in the top-left quadrant only.
    assert np.mean(shares) > 0.6
    assert np.median(shares) > 0.6


def test_model_randomisation_changes_the_maps(trained: tuple[TinyNet, TinyNet], positives: Tensor) -> None:
    first, second = trained
    trained_maps = grad_cam(first, positives, [LABEL])[LABEL]
    between_trained = mean_rank_correlation(trained_maps, grad_cam(second, positives, [LABEL])[LABEL])
    # Several random initialisations: one of them may happen to like bright squares.
    against_untrained = []
    for seed in range(4):
        torch.manual_seed(seed)
        untrained_maps = grad_cam(TinyNet().eval(), positives, [LABEL])[LABEL]
        against_untrained.append(mean_rank_correlation(trained_maps, untrained_maps))
    assert between_trained > 0.6
    assert np.mean(against_untrained) < between_trained - 0.4


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_has_a_target_layer_with_a_map(name: str) -> None:
    model = FaceAttrNet(name)
    layer = target_layer(model)
    assert any(module is layer for module in model.backbone.modules())
    if "resnet" in name:
        assert layer is model.backbone.layer4
    shapes: list[tuple[int, ...]] = []
    handle = layer.register_forward_hook(lambda _module, _inputs, output: shapes.append(tuple(output.shape)))
    try:
        maps = grad_cam(model, torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8), ["Smiling"])
    finally:
        handle.remove()
    # The last stride-32 stage: a 2x2 map at 64 px.
    assert shapes[0][0] == 1 and shapes[0][2:] == (2, 2)
    assert maps["Smiling"].shape == (1, 64, 64)
    assert torch.isfinite(maps["Smiling"]).all()


def test_tiny_faceattrnet_maps_hooks_mode_and_gradients() -> None:
    torch.manual_seed(0)
    model = FaceAttrNet("resnet10t").train()
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    maps = grad_cam(model, images, ["Smiling", "Wearing_Hat", "beauty"])
    assert sorted(maps) == ["Smiling", "Wearing_Hat", "beauty"]
    for cam in maps.values():
        assert cam.shape == (3, 64, 64) and cam.dtype == torch.float32
        assert torch.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1
    assert model.training, "the model's mode must be restored"
    assert all(parameter.grad is None for parameter in model.parameters())
    assert not target_layer(model)._forward_hooks
    # The same maps image by image: the batch does not mix samples.
    alone = grad_cam(model, images[1:2], ["Smiling"])["Smiling"]
    torch.testing.assert_close(alone[0], maps["Smiling"][1], atol=1e-5, rtol=1e-4)
    model.eval()
    grad_cam(model, images, "Smiling")
    assert not model.training


def test_a_chosen_layer_gives_a_finer_map_and_a_bad_one_is_refused() -> None:
    torch.manual_seed(0)
    model = FaceAttrNet("resnet10t").eval()
    assert stage_names(model) == ["backbone.act1", "backbone.layer1", "backbone.layer2", "backbone.layer3",
                                  "backbone.layer4"]
    assert target_layer(model, "backbone.layer3") is model.backbone.layer3
    assert target_layer(model, -2) is model.backbone.layer3
    assert target_layer(model, -1) is target_layer(model) is model.backbone.layer4
    # The default, for an input size: the deepest stage whose map is at least 4x4.
    assert target_layer(model, input_side=64) is model.backbone.layer3
    assert target_layer(model, input_side=128) is model.backbone.layer4
    assert target_layer(model, input_side=4) is model.backbone.layer4  # none that fine: the last stage
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    shapes: list[tuple[int, ...]] = []
    handle = model.backbone.layer3.register_forward_hook(lambda _m, _i, output: shapes.append(tuple(output.shape)))
    try:
        fine = grad_cam(model, images, ["Smiling"], layer="backbone.layer3")["Smiling"]
        assert len(model.backbone.layer3._forward_hooks) == 1, "grad_cam's own hook must be gone"
    finally:
        handle.remove()
    assert shapes[0][2:] == (4, 4)  # stride 16 at 64 px: twice as fine as layer4's 2x2
    assert torch.equal(grad_cam(model, images, ["Smiling"])["Smiling"], fine)  # layer3 is the default at 64 px
    coarse = grad_cam(model, images, ["Smiling"], layer=-1)["Smiling"]
    assert fine.shape == coarse.shape == (2, 64, 64)
    assert not torch.allclose(fine, coarse)
    for bad, message in (("backbone.layer9", "'backbone.layer9' is not a module of FaceAttrNet; its stages are: "
                                             "backbone.act1, backbone.layer1"),
                         ("", "'' is not a module"), (5, "index 5 is out of range: FaceAttrNet has 5 stages")):
        with pytest.raises(ConfigError, match=message):
            grad_cam(model, images, ["Smiling"], layer=bad)
    for stage in stage_names(model):
        assert not model.get_submodule(stage)._forward_hooks
    with pytest.raises(ConfigError, match="'Smilling'"):
        grad_cam(model, images, ["Smilling"], layer="backbone.layer3")
    assert not model.backbone.layer3._forward_hooks


def test_hooks_and_mode_are_restored_after_an_error() -> None:
    model = FaceAttrNet("resnet10t").train()
    with pytest.raises(ConfigError, match="'Smilling'"):
        grad_cam(model, torch.zeros(1, 3, 64, 64, dtype=torch.uint8), ["Smiling", "Smilling"])
    assert not target_layer(model)._forward_hooks
    assert model.training
    with pytest.raises(TypeError):  # raised by the model itself, inside the forward pass
        grad_cam(model, torch.zeros(1, 3, 64, 64), ["Smiling"])
    assert not target_layer(model)._forward_hooks
    assert model.training


def test_bad_inputs_are_refused() -> None:
    model = TinyNet()
    with pytest.raises(ConfigError, match=r"\(3, 32, 32\)"):
        grad_cam(model, torch.zeros(3, SIDE, SIDE), [LABEL])
    with pytest.raises(ConfigError, match="at least one target"):
        grad_cam(model, torch.zeros(1, 3, SIDE, SIDE), [])
    with pytest.raises(ConfigError, match="layer4"):
        target_layer(nn.Sequential(nn.Conv2d(3, 3, 1)))


def test_normalise_maps_scales_each_map_and_keeps_flat_maps_at_zero() -> None:
    maps = torch.stack([torch.full((4, 4), 3.0), torch.zeros(4, 4), torch.arange(16.0).view(4, 4) + 2])
    scaled = normalise_maps(maps)
    assert torch.equal(scaled[0], torch.zeros(4, 4))
    assert torch.equal(scaled[1], torch.zeros(4, 4))
    assert scaled[2].min() == 0 and scaled[2].max() == 1
    torch.testing.assert_close(scaled[2], torch.arange(16.0).view(4, 4) / 15)


def test_region_share() -> None:
    uniform = torch.ones(8, 8)
    assert region_share(uniform, (0, 0, 4, 4)) == pytest.approx(0.25)
    assert region_share(uniform, (-5, -5, 100, 100)) == pytest.approx(1.0)  # clipped to the map
    assert region_share(uniform, (20, 20, 30, 30)) == 0.0
    spot = np.zeros((8, 8))
    spot[6, 1] = 2.0
    assert region_share(spot, (0, 4, 4, 8)) == 1.0
    assert region_share(torch.zeros(8, 8), (0, 0, 4, 4)) == 0.0
    with pytest.raises(ConfigError, match="x1 < x2"):
        region_share(uniform, (4, 0, 2, 4))
    with pytest.raises(ConfigError, match="one \\(H, W\\) map"):
        region_share(torch.ones(2, 8, 8), (0, 0, 4, 4))


def similarity(scale: float, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    """A (2, 3) similarity warp: rotate and scale about the origin, then shift."""
    angle = math.radians(degrees)
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[cos, -sin, shift[0]], [sin, cos, shift[1]]])


def test_warp_to_photo_puts_the_map_back_where_the_face_was() -> None:
    # Photo pixels -> a 32 px map: the face is a half-scale, 20-degree-rotated patch of the photo.
    matrix = similarity(0.5, 20.0, (-20.0, -25.0))
    cam = np.zeros((32, 32), np.float32)
    cam[14:19, 20:25] = 1.0  # a blob centred at map pixel (22, 16), photo pixel (107.0, 48.3)
    photo = warp_to_photo(cam, matrix, (120, 160))
    assert photo.shape == (120, 160) and photo.dtype == np.float32
    rows, cols = np.nonzero(photo > 0.5)
    centre = np.array([cols.mean(), rows.mean()])
    # The blob's centre in the photo is the inverse warp of its centre in the map.
    expected = np.linalg.solve(matrix[:, :2], np.array([22.0, 16.0]) - matrix[:, 2])
    assert np.abs(centre - expected).max() < 1.0
    # Twice the scale in the photo: about four times the area.
    assert 3.0 < (photo > 0.5).sum() / (cam > 0.5).sum() < 5.0
    # Torch maps are taken too; outside the face crop (the map's corner (0, 0) lands at photo
    # pixel (54.7, 33.3)) the photo map is 0, and a uniform map covers exactly the crop.
    np.testing.assert_array_equal(warp_to_photo(torch.from_numpy(cam), matrix, (120, 160)), photo)
    assert photo[:30].max() == 0.0
    covered = warp_to_photo(np.ones((32, 32)), matrix, (120, 160)) > 0.5
    assert covered.sum() == pytest.approx(32 * 32 * 4, rel=0.1)


def test_warp_to_photo_refuses_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="invertible"):
        warp_to_photo(np.zeros((4, 4)), np.zeros((2, 3)), (8, 8))
    with pytest.raises(ConfigError, match="photo_size"):
        warp_to_photo(np.zeros((4, 4)), similarity(1.0, 0.0, (0.0, 0.0)), (8, 0))
    with pytest.raises(ConfigError, match="one \\(h, w\\) map"):
        warp_to_photo(np.zeros((1, 4, 4)), similarity(1.0, 0.0, (0.0, 0.0)), (8, 8))
