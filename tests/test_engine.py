"""The training engine end to end on generated data: outputs, resume, determinism, DDP, eval."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from faceattr.models.weights_io import load_checkpoint
from faceattr.config import config_from_dict, load_config
from faceattr.data.readers.celeba import read_celeba
from faceattr.synthetic.fixtures import make_celeba, make_scut
from faceattr.data.readers.scut import read_scut
from faceattr.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_celeba(root / "celeba", identities=12, images_per_identity=3, seed=1)
    make_scut(root / "scut", count=30, seed=1)
    return root


def tiny_config(data_root, out, *overrides, sources=("celeba", "scut")):
    kinds = {"celeba": {"kind": "celeba", "root": str(data_root / "celeba")},
             "scut": {"kind": "scut", "root": str(data_root / "scut"), "folds": 3}}
    values = {"data": {"sources": [kinds[s] for s in sources], "image_size": 32, "batch_size": 8, "workers": 0},
              "model": {"backbone": "resnet10t"},
              "optim": {"epochs": 3, "lr": 0.01, "warmup_epochs": 0.5},
              "train": {"output_dir": str(out), "amp": False, "channels_last": False, "max_steps_per_epoch": 3}}
    return config_from_dict(values, list(overrides))


def final_weights(out):
    return load_checkpoint(out / "last.pt")["train"]["model"]


def test_a_run_writes_checkpoints_history_config_and_report(data_root, tmp_path):
    from faceattr.training.engine import fit

    config = tiny_config(data_root, tmp_path / "run")
    evaluation = fit(config)
    out = tmp_path / "run"
    best = load_checkpoint(out / "best.pt")
    assert len(best["thresholds"]) == 40 and best["model_args"]["backbone"] == "resnet10t"
    assert "train" not in best  # the deploy file carries no optimiser state
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    best_epoch = max(history, key=lambda h: h["val_balanced_accuracy"])["epoch"]
    assert best["epoch"] == best_epoch
    assert evaluation["attribute_means"]["balanced_accuracy"] == pytest.approx(
        max(h["val_balanced_accuracy"] for h in history))
    assert evaluation["beauty"]["count"] == 10  # one SCUT fold of three
    assert load_config(out / "config.yaml") == config
    assert (out / "report" / "report.md").is_file() and (out / "report" / "balanced_accuracy.png").is_file()
    assert any((out / "tensorboard").iterdir())


def test_an_existing_run_is_never_overwritten_silently(data_root, tmp_path):
    from faceattr.training.engine import fit

    config = tiny_config(data_root, tmp_path / "run", "optim.epochs=1")
    fit(config)
    with pytest.raises(ConfigError, match="--resume"):
        fit(config)
    fit(config, overwrite=True)


@pytest.mark.parametrize("preload", [False, True])
def test_resume_after_a_kill_ends_where_the_uninterrupted_run_ends(data_root, tmp_path, monkeypatch, preload):
    import faceattr.training.engine as engine

    # Workers and dropout included: neither may make the resumed run differ.
    settings = ("data.workers=1", "model.drop_rate=0.2", f"data.preload={preload}")
    engine.fit(tiny_config(data_root, tmp_path / "straight", *settings))

    real_epoch = engine.train_one_epoch

    def dies_in_third_epoch(*args, **kwargs):
        if args[9] == 2:  # (model, loss, loader, optimizer, scheduler, scaler, ema, device, config, epoch, ...)
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", dies_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        engine.fit(tiny_config(data_root, tmp_path / "killed", *settings))
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] == 2
    monkeypatch.setattr(engine, "train_one_epoch", real_epoch)
    engine.fit(tiny_config(data_root, tmp_path / "killed", *settings), resume=True)

    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6, msg=key)
    history = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert len(history) == 3


def test_resume_refuses_a_changed_config_and_keeps_the_run_intact(data_root, tmp_path):
    from faceattr.training.engine import fit

    fit(tiny_config(data_root, tmp_path / "run", "optim.epochs=1"))
    saved = (tmp_path / "run" / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="model.beauty_head, optim.optimizer"):
        fit(tiny_config(data_root, tmp_path / "run", "optim.epochs=2", "optim.optimizer=sgd",
                        "model.beauty_head=distribution"), resume=True)
    assert (tmp_path / "run" / "config.yaml").read_text() == saved
    fit(tiny_config(data_root, tmp_path / "run", "optim.epochs=2"), resume=True)  # more epochs is fine
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_nan_first_score_does_not_block_later_best_epochs(data_root, tmp_path, monkeypatch):
    import faceattr.training.engine as engine

    scores = iter([float("nan"), 0.6, 0.7])
    monkeypatch.setattr(engine, "headline", lambda evaluation: next(scores))
    engine.fit(tiny_config(data_root, tmp_path / "run"))
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 3


@pytest.mark.parametrize("preload", [False, True])
def test_the_same_seed_gives_the_same_run_and_another_seed_does_not(data_root, tmp_path, preload):
    from faceattr.training.engine import fit

    weights = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        fit(tiny_config(data_root, tmp_path / name, "optim.epochs=1", f"train.seed={seed}", f"data.preload={preload}"))
        weights[name] = final_weights(tmp_path / name)
    assert all(torch.equal(weights["a"][key], weights["b"][key]) for key in weights["a"])
    assert not all(torch.equal(weights["a"][key], weights["c"][key]) for key in weights["a"])


def test_early_stopping_stops_when_validation_stops_improving(data_root, tmp_path, monkeypatch):
    import faceattr.training.engine as engine

    scores = iter([0.6, 0.7, 0.7, 0.65, 0.9, 0.9])  # no gain after the second epoch, until too late
    monkeypatch.setattr(engine, "headline", lambda evaluation: next(scores))
    engine.fit(tiny_config(data_root, tmp_path / "run", "optim.epochs=6", "train.early_stopping=2"))
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 4
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 2


def test_a_beauty_only_run_selects_on_pearson(data_root, tmp_path):
    from faceattr.training.engine import fit

    evaluation = fit(tiny_config(data_root, tmp_path / "run", "optim.epochs=1", sources=("scut",)))
    assert evaluation["attributes"] is None and evaluation["beauty"]["count"] == 10


def test_eval_tool_reports_with_the_stored_thresholds(data_root, tmp_path):
    from faceattr.training.engine import fit

    sys.path.insert(0, str(REPO / "tools"))
    import eval as eval_tool

    fit(tiny_config(data_root, tmp_path / "run", "optim.epochs=1"))
    assert eval_tool.main([str(tmp_path / "run" / "best.pt"), "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    stored = load_checkpoint(tmp_path / "run" / "best.pt")["thresholds"]
    assert [report["attributes"][name]["threshold"] for name in report["attributes"]] == pytest.approx(stored)
    assert eval_tool.main([str(tmp_path / "missing.pt")]) == 2


def test_ddp_with_two_gloo_processes(data_root, tmp_path):
    overrides = [f"data.sources.0.root={data_root / 'celeba'}", f"data.sources.1.root={data_root / 'scut'}",
                 f"train.output_dir={tmp_path / 'ddp'}"]
    config = tmp_path / "ddp.yaml"
    config.write_text("""
data:
  sources: [{kind: celeba, root: x}, {kind: scut, root: y, folds: 3}]
  image_size: 32
  batch_size: 4
  workers: 0
model: {backbone: resnet10t}
optim: {epochs: 2, lr: 0.01}
train: {amp: false, channels_last: false, max_steps_per_epoch: 3}
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(REPO / "tools" / "train.py"), str(config), *overrides],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr
    best = load_checkpoint(tmp_path / "ddp" / "best.pt")
    # Validation is sharded over the two ranks and gathered back: every image is scored once.
    val_images = sum(r.split == "val" for r in read_celeba(data_root / "celeba").records + read_scut(
        data_root / "scut", folds=3).records)
    assert best["metrics"]["meta"]["images"] == val_images
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 2
