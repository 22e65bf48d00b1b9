"""Tests of faceattr.models.weights_io (atomic writes, weights-only loading) and of rebuilding the network."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from faceattr.config import Config, config_to_dict
from faceattr.errors import CheckpointError
from faceattr.models import FaceAttrNet
from faceattr.models.deployed import DeployedModel
from faceattr.models.weights_io import (
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)

IMAGES = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _net() -> FaceAttrNet:
    torch.manual_seed(0)
    return FaceAttrNet("resnet10t", beauty_head="distribution", beauty_bins=5)


def _assert_same(loaded: Any, saved: Any) -> None:
    assert type(loaded) is type(saved)
    if isinstance(saved, torch.Tensor):
        assert torch.equal(loaded, saved)
    elif isinstance(saved, dict):
        assert list(loaded) == list(saved)
        for key in saved:
            _assert_same(loaded[key], saved[key])
    elif isinstance(saved, (list, tuple)):
        assert len(loaded) == len(saved)
        for loaded_item, saved_item in zip(loaded, saved):
            _assert_same(loaded_item, saved_item)
    else:
        assert loaded == saved


def _realistic_state() -> dict[str, Any]:
    net = _net()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(IMAGES)["attributes"].sum().backward()
    optimizer.step()
    return {"model": net.state_dict(), "model_args": net.model_args, "optimizer": optimizer.state_dict(),
            "epoch": 4, "best_metric": 0.91, "history": [{"epoch": 3, "loss": 0.5}, {"epoch": 4, "loss": 0.4}],
            "thresholds": torch.full((40,), 0.5), "config": config_to_dict(Config()), "note": None}


def test_realistic_checkpoint_loads_weights_only(tmp_path: Path) -> None:
    state = _realistic_state()
    save_checkpoint(state, tmp_path / "last.pt")
    _assert_same(load_checkpoint(tmp_path / "last.pt"), state)


def test_interrupted_save_keeps_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, path)

    def crash_mid_write(obj: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        file.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path) == {"epoch": 1}
    assert [entry.name for entry in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize(("value", "type_name"), [
    (argparse.Namespace(lr=0.1), "argparse.Namespace"), (np.float64(0.5), "numpy.float64")])
def test_save_refuses_values_weights_only_cannot_load(tmp_path: Path, value: Any, type_name: str) -> None:
    with pytest.raises(CheckpointError, match=rf"state\['extra'\]\['args'\]: {type_name} cannot"):
        save_checkpoint({"epoch": 1, "extra": {"args": value}}, tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []


def test_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nowhere.pt: checkpoint file not found"):
        load_checkpoint(tmp_path / "nowhere.pt")


@pytest.mark.parametrize("corrupt", [lambda data: data[: len(data) // 2], lambda data: b"not a checkpoint at all"])
def test_corrupt_checkpoint_names_the_path(tmp_path: Path, corrupt: Any) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(1000)}}, path)
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(CheckpointError, match="last.pt: not a readable checkpoint"):
        load_checkpoint(path)


def test_pickled_objects_are_refused_on_load(tmp_path: Path) -> None:
    torch.save({"args": argparse.Namespace(lr=0.1)}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="old.pt: .*argparse.Namespace"):
        load_checkpoint(tmp_path / "old.pt")


class _Forbidden:
    """Pickles as a call of os.system: what a malicious checkpoint would run on load."""

    def __reduce__(self) -> tuple:
        import os

        return os.system, ("echo pwned",)


def test_a_pickled_forbidden_global_is_named_without_advising_unsafe_loading(tmp_path: Path) -> None:
    torch.save({"model": {}, "payload": _Forbidden()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(tmp_path / "evil.pt")
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'evil.pt'}: not a readable checkpoint")
    assert "system" in message  # posix.system on Linux, nt.system on Windows: os.system either way
    assert "weights_only" not in message and "False" not in message


def _checkpoint(net: FaceAttrNet) -> dict[str, Any]:
    """What the trainer writes for ``net`` (thresholds 0.5, default config)."""
    return DeployedModel.from_training(net, [0.5] * 40, Config(), 1, {}).to_checkpoint()


def _rebuilt(checkpoint: dict[str, Any]) -> FaceAttrNet:
    return DeployedModel.from_checkpoint(checkpoint, Path("best.pt")).build_network()


def test_rebuilt_network_gives_identical_outputs(tmp_path: Path) -> None:
    net = _net().eval()
    save_checkpoint(_checkpoint(net), tmp_path / "best.pt")
    rebuilt = DeployedModel.load(tmp_path / "best.pt").build_network()
    assert not rebuilt.training
    with torch.no_grad():
        expected, actual = net(IMAGES), rebuilt(IMAGES)
    assert set(actual) == set(expected)
    assert all(torch.equal(actual[key], expected[key]) for key in expected)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_rebuilt_network_strips_wrapper_prefixes(prefix: str) -> None:
    net = _net()
    wrapped = {prefix + key: value for key, value in net.state_dict().items()}
    rebuilt = _rebuilt({**_checkpoint(net), "model": wrapped})
    assert torch.equal(rebuilt.beauty_head.fc.weight, net.beauty_head.fc.weight)


@pytest.mark.parametrize("key", ["model_args", "model", "thresholds", "config"])
def test_a_missing_checkpoint_key_is_named(key: str) -> None:
    checkpoint = _checkpoint(_net())
    del checkpoint[key]
    with pytest.raises(CheckpointError, match=f"best.pt: lacks '{key}'"):
        _rebuilt(checkpoint)


def test_unknown_model_args_are_refused() -> None:
    with pytest.raises(CheckpointError, match="best.pt: 'model_args'.*unknown backbone 'resnet9000'"):
        _rebuilt({**_checkpoint(_net()), "model": {}, "model_args": {"backbone": "resnet9000"}})


def test_keys_that_do_not_fit_are_named() -> None:
    checkpoint = _checkpoint(_net())
    del checkpoint["model"]["attribute_head.fc.bias"]
    with pytest.raises(CheckpointError, match="missing keys: attribute_head.fc.bias"):
        _rebuilt(checkpoint)


def test_weights_roundtrip_keeps_tensors_and_metadata(tmp_path: Path) -> None:
    net = _net()
    metadata = {"model_args": '{"backbone": "resnet10t"}', "faceattr_version": "0.1.0"}
    save_weights(net, tmp_path / "model.safetensors", metadata)
    tensors, loaded_metadata = load_weights(tmp_path / "model.safetensors")
    assert loaded_metadata == metadata
    state = net.state_dict()
    assert tensors.keys() == state.keys()  # safetensors stores keys sorted
    assert all(torch.equal(tensors[key], state[key]) for key in state)


def test_failed_weights_save_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    net = _net()
    save_weights(net, path, {"version": "1"})
    with pytest.raises(TypeError):
        save_weights(net, path, {"version": 2})  # type: ignore[dict-item]
    assert load_weights(path)[1] == {"version": "1"}
    assert [entry.name for entry in tmp_path.iterdir()] == ["model.safetensors"]


def test_corrupt_weights_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors file"):
        load_weights(path)
