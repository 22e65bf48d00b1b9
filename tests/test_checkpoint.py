"""Tests of faceattr.models.checkpoint: atomic writes, weights-only loading, rebuilding the network."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from faceattr.models.checkpoint import (
    load_checkpoint, load_weights, model_from_checkpoint, save_checkpoint, save_weights,
)
from faceattr.config import Config, config_to_dict
from faceattr.errors import CheckpointError
from faceattr.models import FaceAttrNet

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


def test_model_from_checkpoint_gives_identical_outputs(tmp_path: Path) -> None:
    net = _net().eval()
    save_checkpoint({"model": net.state_dict(), "model_args": net.model_args}, tmp_path / "best.pt")
    rebuilt = model_from_checkpoint(load_checkpoint(tmp_path / "best.pt")).eval()
    with torch.no_grad():
        expected, actual = net(IMAGES), rebuilt(IMAGES)
    assert set(actual) == set(expected)
    assert all(torch.equal(actual[key], expected[key]) for key in expected)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_model_from_checkpoint_strips_wrapper_prefixes(prefix: str) -> None:
    net = _net()
    wrapped = {prefix + key: value for key, value in net.state_dict().items()}
    rebuilt = model_from_checkpoint({"model": wrapped, "model_args": net.model_args})
    assert torch.equal(rebuilt.beauty_head.fc.weight, net.beauty_head.fc.weight)


@pytest.mark.parametrize("key", ["model_args", "model"])
def test_model_from_checkpoint_names_a_missing_key(key: str) -> None:
    net = _net()
    checkpoint = {"model": net.state_dict(), "model_args": net.model_args}
    del checkpoint[key]
    with pytest.raises(CheckpointError, match=f"no '{key}' key"):
        model_from_checkpoint(checkpoint)


def test_model_from_checkpoint_rejects_unknown_model_args() -> None:
    with pytest.raises(CheckpointError, match="'model_args'.*unknown backbone 'resnet9000'"):
        model_from_checkpoint({"model": {}, "model_args": {"backbone": "resnet9000"}})


def test_model_from_checkpoint_names_keys_that_do_not_fit() -> None:
    net = _net()
    state = net.state_dict()
    del state["attribute_head.fc.bias"]
    with pytest.raises(CheckpointError, match="missing keys: attribute_head.fc.bias"):
        model_from_checkpoint({"model": state, "model_args": net.model_args})


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
