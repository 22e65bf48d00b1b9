"""Tests of faceattr.models: backbones by name, attention placement, heads, FaceAttrNet."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from timm.layers import EcaModule, GlobalContext, SelectiveKernel, SEModule
from timm.layers.cbam import CbamModule
from torch import nn

from faceattr.attributes import NUM_ATTRIBUTES
from faceattr.config import ModelConfig
from faceattr.errors import CheckpointError
from faceattr.models import BACKBONES, FaceAttrNet, build_model, create_backbone
from faceattr.models.heads import BeautyHead
from faceattr.models.weights_io import save_weights

IMAGES = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # backbone input
PIXELS = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _residual_blocks(model: nn.Module) -> list[nn.Module]:
    return [block for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for block in stage]


@pytest.fixture(scope="module")
def gc_resnet50() -> nn.Module:
    return create_backbone("gc_resnet50").eval()


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_and_gives_pooled_features(name: str) -> None:
    backbone = create_backbone(name).eval()
    with torch.no_grad():
        features = backbone(IMAGES)
    assert features.shape == (2, backbone.head_hidden_size)
    assert torch.isfinite(features).all()


def test_unknown_backbone_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="resnet18.*gc_resnet50"):
        create_backbone("resnet9000")


def test_gc_blocks_only_in_layer2_to_layer4(gc_resnet50: nn.Module) -> None:
    assert all(block.se is None for block in gc_resnet50.layer1)
    later_blocks = [block for stage in (gc_resnet50.layer2, gc_resnet50.layer3, gc_resnet50.layer4)
                    for block in stage]
    assert all(isinstance(block.se, GlobalContext) for block in later_blocks)
    assert sum(isinstance(module, GlobalContext) for module in gc_resnet50.modules()) == len(later_blocks)


def test_gc_blocks_follow_the_paper_design(gc_resnet50: nn.Module) -> None:
    for block in gc_resnet50.layer2:
        gc, channels = block.se, block.conv3.out_channels
        assert gc.mlp_scale is None and gc.mlp_add is not None  # fusion by addition
        assert gc.mlp_add.fc1.out_channels == channels // 16
        assert torch.all(gc.mlp_add.fc2.weight == 0)  # each block starts as the plain block


def test_gc_resnet18_has_zero_initialised_gc_blocks_in_stages_c3_to_c5_only() -> None:
    from timm.layers import GlobalContext

    backbone = create_backbone("gc_resnet18")
    assert all(block.se is None for block in backbone.layer1)
    for layer in (backbone.layer2, backbone.layer3, backbone.layer4):
        for block in layer:
            assert isinstance(block.se, GlobalContext) and torch.all(block.se.mlp_add.fc2.weight == 0)
            assert block.se.mlp_add.fc1.out_channels == block.conv2.out_channels // 16


def test_gc_block_runs_on_the_last_conv_output_before_the_residual_sum(gc_resnet50: nn.Module) -> None:
    net, block = gc_resnet50, gc_resnet50.layer3[1]
    seen: dict[str, torch.Tensor] = {}
    # Clones because the block adds the shortcut and applies ReLU in place.
    hooks = [
        block.bn3.register_forward_hook(lambda module, args, output: seen.update(bn3=output)),
        block.se.register_forward_hook(lambda module, args, output: seen.update(gc_in=args[0], gc_out=output.clone())),
        block.act3.register_forward_hook(lambda module, args, output: seen.update(out=output.clone())),
    ]
    try:
        with torch.no_grad():
            block_input = net.layer3[0](net.layer2(net.layer1(net.maxpool(net.act1(net.bn1(net.conv1(IMAGES)))))))
            block(block_input)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen["gc_in"] is seen["bn3"]
    assert torch.allclose(seen["out"], torch.relu(seen["gc_out"] + block_input), atol=1e-6)


@pytest.mark.parametrize(("name", "attention"), [
    ("se_resnet18", SEModule), ("se_resnet50", SEModule), ("eca_resnet50", EcaModule),
    ("cbam_resnet50", CbamModule), ("sk_resnet18", SelectiveKernel)])
def test_attention_module_in_every_residual_block(name: str, attention: type[nn.Module]) -> None:
    backbone = create_backbone(name)
    blocks = _residual_blocks(backbone)
    assert all(sum(isinstance(module, attention) for module in block.modules()) == 1 for block in blocks)
    assert sum(isinstance(module, attention) for module in backbone.modules()) == len(blocks)


def test_distribution_score_is_softmax_times_bin_centres() -> None:
    head = BeautyHead(16, kind="distribution", bins=5)
    outputs = head(torch.randn(4, 16))
    assert head.centres.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    expected = (outputs["beauty_logits"].softmax(dim=1) * head.centres).sum(dim=1)
    assert torch.allclose(outputs["beauty"], expected)


def test_distribution_score_stays_inside_the_scale() -> None:
    head = BeautyHead(16, kind="distribution", bins=9)
    score = head(1000 * torch.randn(64, 16, generator=torch.Generator().manual_seed(1)))["beauty"]
    assert score.min() >= 1.0 and score.max() <= 5.0
    assert score.max() - score.min() > 2.0  # saturated softmaxes reach towards the ends


def test_regression_score_starts_at_the_middle_of_the_scale() -> None:
    outputs = BeautyHead(16, kind="regression")(torch.zeros(3, 16))
    assert set(outputs) == {"beauty"}
    assert torch.allclose(outputs["beauty"], torch.full((3,), 3.0))


def test_beauty_head_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="regression, distribution"):
        BeautyHead(16, kind="ordinal")


@pytest.mark.parametrize(("beauty_head", "keys"), [
    ("regression", {"attributes": (2, NUM_ATTRIBUTES), "beauty": (2,)}),
    ("distribution", {"attributes": (2, NUM_ATTRIBUTES), "beauty": (2,), "beauty_logits": (2, 7)})])
def test_net_returns_one_output_per_task(beauty_head: str, keys: dict[str, tuple[int, ...]]) -> None:
    net = FaceAttrNet("mobilenetv3_small_050", beauty_head=beauty_head, beauty_bins=7).eval()
    with torch.no_grad():
        outputs = net(PIXELS)
    assert {key: tuple(value.shape) for key, value in outputs.items()} == keys


def test_model_args_rebuild_the_same_architecture() -> None:
    net = FaceAttrNet("resnet10t", beauty_head="distribution", beauty_bins=5, drop_rate=0.2, stem_stride=2, width=0.5,
                      drop_path_rate=0.1)
    assert net.model_args == dict(backbone="resnet10t", beauty_head="distribution", beauty_bins=5, drop_rate=0.2,
                                  stem_stride=2, width=0.5, drop_path_rate=0.1)
    rebuilt = FaceAttrNet(**net.model_args)
    assert {key: value.shape for key, value in rebuilt.state_dict().items()} == \
           {key: value.shape for key, value in net.state_dict().items()}


def test_dropout_acts_on_features_before_the_heads() -> None:
    net = FaceAttrNet("resnet10t", drop_rate=1.0).train()
    outputs = net(PIXELS)
    assert torch.equal(outputs["attributes"], net.attribute_head.fc.bias.expand(2, -1))


def test_build_model_follows_the_config() -> None:
    net = build_model(ModelConfig(backbone="resnet10t", weights="", beauty_head="distribution", beauty_bins=6,
                                  stem_stride=1))
    assert net.model_args == dict(backbone="resnet10t", beauty_head="distribution", beauty_bins=6, drop_rate=0.0,
                                  stem_stride=1, width=1.0, drop_path_rate=0.0)


@pytest.mark.parametrize(("stem_stride", "first_block_side", "last_side"), [(4, 16, 2), (2, 32, 4), (1, 64, 8)])
def test_stem_stride_sets_the_map_sizes_of_a_64px_face(stem_stride: int, first_block_side: int, last_side: int) -> None:
    backbone = create_backbone("resnet18", stem_stride=stem_stride).eval()
    sides = {}
    hooks = [getattr(backbone, name).register_forward_hook(
        lambda module, args, output, name=name: sides.__setitem__(name, output.shape[-1])) for name in ("layer1", "layer4")]
    with torch.no_grad():
        backbone(torch.zeros(1, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    assert sides == {"layer1": first_block_side, "layer4": last_side}
    # Grad-CAM chooses its layer by these reductions.
    assert [stage["reduction"] for stage in backbone.feature_info] == \
        [min(stem_stride, 2)] + [64 // first_block_side * 2 ** i for i in range(4)]


def test_a_standard_stem_network_warm_starts_a_finer_stem() -> None:
    standard = FaceAttrNet("resnet10t").eval()
    finer = FaceAttrNet("resnet10t", stem_stride=2).eval()
    finer.load_state_dict(standard.state_dict())
    with torch.no_grad():
        assert not torch.allclose(finer(PIXELS)["attributes"], standard(PIXELS)["attributes"])


def test_width_scales_the_channels_and_stays_a_resnet() -> None:
    half = create_backbone("se_resnet18", width=0.5)
    assert half.head_hidden_size == 256
    assert sum(p.numel() for p in half.parameters()) < 0.3 * sum(p.numel() for p in create_backbone("se_resnet18").parameters())


def test_stem_and_width_are_refused_for_a_backbone_that_is_not_a_resnet() -> None:
    with pytest.raises(ValueError, match="apply to the ResNet backbones"):
        create_backbone("mobilenetv3_small_050", width=0.5)


def test_drop_path_skips_residual_blocks_only_while_training() -> None:
    net = FaceAttrNet("resnet10t", drop_path_rate=0.5)
    for module in net.modules():  # timm zero-initialises each block's last BatchNorm: a new block adds nothing
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
    torch.manual_seed(0)
    net.train()
    first, second = net(PIXELS)["attributes"], net(PIXELS)["attributes"]
    assert not torch.allclose(first, second)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(PIXELS)["attributes"], net(PIXELS)["attributes"])


def test_safetensors_weights_roundtrip(tmp_path: Path) -> None:
    source = create_backbone("resnet10t").eval()
    save_weights(source, tmp_path / "backbone.safetensors", {})
    loaded = create_backbone("resnet10t", weights=tmp_path / "backbone.safetensors").eval()
    with torch.no_grad():
        assert torch.equal(loaded(IMAGES), source(IMAGES))


def test_build_model_loads_backbone_weights(tmp_path: Path) -> None:
    source = create_backbone("resnet10t")
    save_weights(source, tmp_path / "backbone.safetensors", {})
    net = build_model(ModelConfig(backbone="resnet10t", weights=str(tmp_path / "backbone.safetensors")))
    assert torch.equal(net.backbone.conv1[0].weight, source.conv1[0].weight)


def test_timm_checkpoint_loads_without_its_classifier(tmp_path: Path) -> None:
    classifier_model = timm.create_model("resnet10t", pretrained=False, num_classes=10).eval()
    torch.save({"state_dict": classifier_model.state_dict(), "epoch": 90}, tmp_path / "timm.pth")
    backbone = create_backbone("resnet10t", weights=tmp_path / "timm.pth").eval()
    with torch.no_grad():
        expected = classifier_model.forward_head(classifier_model.forward_features(IMAGES), pre_logits=True)
        assert torch.equal(backbone(IMAGES), expected)


def test_missing_weights_file_says_nothing_is_downloaded(tmp_path: Path) -> None:
    path = tmp_path / "resnet50_imagenet.safetensors"
    with pytest.raises(CheckpointError, match="resnet50_imagenet.safetensors.*never downloads"):
        create_backbone("resnet10t", weights=path)


def test_mismatched_weights_name_the_keys(tmp_path: Path) -> None:
    state = create_backbone("resnet10t").state_dict()
    first_key = next(iter(state))
    del state[first_key]
    state["neck.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="odd.pt") as error:
        create_backbone("resnet10t", weights=tmp_path / "odd.pt")
    assert first_key in str(error.value) and "neck.weight" in str(error.value)


def test_weights_with_wrong_shapes_name_the_keys(tmp_path: Path) -> None:
    state = create_backbone("resnet10t").state_dict()
    state["conv1.0.weight"] = torch.zeros(1, 3, 3, 3)
    torch.save(state, tmp_path / "narrow.pt")
    with pytest.raises(CheckpointError, match=r"narrow.pt: .*shapes differ.*conv1\.0\.weight \(1, 3, 3, 3\)"):
        create_backbone("resnet10t", weights=tmp_path / "narrow.pt")


def test_the_network_normalises_uint8_images_itself():
    net = FaceAttrNet("resnet10t").eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = net.attribute_head(net.backbone((PIXELS / 255 - mean) / std))
        torch.testing.assert_close(net(PIXELS)["attributes"], expected)
    assert "mean" not in net.state_dict()  # a constant, not a weight
    with pytest.raises(TypeError, match="uint8"):
        net(IMAGES)
