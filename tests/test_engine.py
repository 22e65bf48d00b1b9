"""The training engine end to end on generated data: outputs, resume, determinism, DDP, eval, and each option."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from faceattr.config import config_from_dict, load_config
from faceattr.data.readers.celeba import read_celeba
from faceattr.data.readers.scut import read_scut
from faceattr.errors import ConfigError
from faceattr.models.weights_io import load_checkpoint
from faceattr.synthetic.fixtures import make_celeba, make_scut

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


@pytest.mark.parametrize("present", ["best.pt", "last.pt", "config.yaml", "metrics.jsonl"])
def test_any_file_of_a_run_means_the_folder_holds_one(data_root, tmp_path, present):
    from faceattr.training.engine import fit

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / present).write_bytes(b"the user's")
    with pytest.raises(ConfigError, match=f"already holds a run \\({present}\\)"):
        fit(tiny_config(data_root, tmp_path / "run"))
    assert (tmp_path / "run" / present).read_bytes() == b"the user's"


def test_train_tool_refuses_a_folder_with_only_best_pt_and_keeps_it(tiny_config_file, tmp_path, run_tool):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"the user's model")
    result = run_tool("train", tiny_config_file, f"train.output_dir={tmp_path / 'run'}")
    assert result.status == 2 and "already holds a run (best.pt)" in result.err and "--overwrite" in result.err
    assert (tmp_path / "run" / "best.pt").read_bytes() == b"the user's model"


def test_resume_without_last_pt_names_it_and_keeps_the_run(data_root, tmp_path):
    from faceattr.training.engine import fit

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"the user's")
    with pytest.raises(ConfigError, match="--resume: .* has no last.pt .*best.pt"):
        fit(tiny_config(data_root, tmp_path / "run"), resume=True)
    assert (tmp_path / "run" / "best.pt").read_bytes() == b"the user's"


def test_a_run_start_removes_only_its_stale_checkpoint_temporaries(data_root, tmp_path, caplog):
    """A checkpoint write killed with SIGKILL leaves its temporary file; the next start removes it."""
    from faceattr.training.engine import fit

    out = tmp_path / "run"
    out.mkdir()
    stale, kept = out / ".last.pt.0123abcd.tmp", out / ".notes.txt.0123abcd.tmp"
    stale.write_bytes(b"half a checkpoint")
    kept.write_bytes(b"not ours")
    with caplog.at_level("INFO", logger="faceattr.files"):
        fit(tiny_config(data_root, out, "optim.epochs=1"))
    assert not stale.exists() and kept.read_bytes() == b"not ours"
    assert str(stale) in caplog.text
    assert [path.name for path in out.glob(".*.tmp")] == [kept.name]  # the run's own writes leave none


def fit_killed_in_epoch(number: int, config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs ``fit`` until epoch ``number`` (1-based) starts, then stops it as a kill would."""
    import faceattr.training.engine as engine

    real_epoch = engine.train_one_epoch

    def dies(*args, epoch, **kwargs):
        if epoch == number - 1:
            raise KeyboardInterrupt
        return real_epoch(*args, epoch=epoch, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", dies)
    with pytest.raises(KeyboardInterrupt):
        engine.fit(config)
    monkeypatch.setattr(engine, "train_one_epoch", real_epoch)


@pytest.mark.parametrize("preload", [False, True])
def test_resume_after_a_kill_ends_where_the_uninterrupted_run_ends(data_root, tmp_path, monkeypatch, preload):
    import faceattr.training.engine as engine

    # Workers, dropout, stochastic depth and random erasing included: none may make the resumed run differ.
    settings = ("data.workers=1", "model.drop_rate=0.2", f"data.preload={preload}", "model.drop_path_rate=0.2",
                "data.random_erasing=0.5", "model.stem_stride=2", "loss.beauty_ranking=0.5")
    engine.fit(tiny_config(data_root, tmp_path / "straight", *settings))

    fit_killed_in_epoch(3, tiny_config(data_root, tmp_path / "killed", *settings), monkeypatch)
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] == 2
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


def test_evaluating_a_trained_checkpoint_reports_with_its_stored_thresholds(data_root, tmp_path):
    from faceattr.errors import CheckpointError
    from faceattr.evaluation.evaluate import evaluate_checkpoint
    from faceattr.training.engine import fit

    fit(tiny_config(data_root, tmp_path / "run", "optim.epochs=1"))
    evaluate_checkpoint(tmp_path / "run" / "best.pt", out_dir=tmp_path / "report", device="cpu")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    stored = load_checkpoint(tmp_path / "run" / "best.pt")["thresholds"]
    assert [report["attributes"][name]["threshold"] for name in report["attributes"]] == pytest.approx(stored)
    with pytest.raises(CheckpointError, match="missing.pt"):
        evaluate_checkpoint(tmp_path / "missing.pt")


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


def test_ema_weights_are_the_ones_deployed_and_a_resume_restores_them_exactly(data_root, tmp_path, monkeypatch):
    import faceattr.training.engine as engine

    settings = ("train.ema_decay=0.5", "optim.epochs=2")
    engine.fit(tiny_config(data_root, tmp_path / "straight", *settings))
    last = load_checkpoint(tmp_path / "straight" / "last.pt")
    ema, raw = last["train"]["ema"], last["train"]["model"]
    assert not all(torch.equal(ema[key], raw[key]) for key in raw)  # decay 0.5 lags the raw weights
    assert all(torch.equal(last["model"][key], ema[key]) for key in ema)  # the deploy part is the EMA

    fit_killed_in_epoch(2, tiny_config(data_root, tmp_path / "killed", *settings), monkeypatch)
    engine.fit(tiny_config(data_root, tmp_path / "killed", *settings), resume=True)
    resumed = load_checkpoint(tmp_path / "killed" / "last.pt")["train"]["ema"]
    for key in ema:
        torch.testing.assert_close(resumed[key], ema[key], rtol=0, atol=1e-6, msg=key)


def test_the_step_schedule_divides_the_rate_at_each_milestone_epoch(data_root, tmp_path):
    from faceattr.training.engine import fit

    # 3 steps an epoch, no warm-up: the rate after epoch e's last step is the one epoch e + 1 starts with.
    fit(tiny_config(data_root, tmp_path / "run", "optim.schedule=step", "optim.milestones=[1, 2]",
                    "optim.gamma=0.1", "optim.warmup_epochs=0", "optim.epochs=3"))
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [h["lr"] for h in history] == pytest.approx([0.001, 0.0001, 0.0001])


def test_a_distribution_head_trains_with_the_emd_loss(data_root, tmp_path):
    from faceattr.training.engine import fit

    evaluation = fit(tiny_config(data_root, tmp_path / "run", "model.beauty_head=distribution", "model.beauty_bins=5",
                                 "loss.beauty=emd", "optim.epochs=1", sources=("scut",)))
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["model_args"]["beauty_head"] == "distribution" and best["model"]["beauty_head.fc.weight"].shape[0] == 5
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert 0 < record["train_beauty"] < 1  # an EMD between distributions over 5 bins is below 1
    assert evaluation["beauty"]["count"] == 10 and 1 <= evaluation["beauty"]["mae"] + 1 <= 5


def test_f1_thresholds_maximise_f1_on_the_validation_predictions(data_root, tmp_path):
    from faceattr.data.loader import build_data, build_loaders
    from faceattr.evaluation.calibration import apply_calibration
    from faceattr.evaluation.evaluate import predict_loader
    from faceattr.evaluation.thresholds import fit_thresholds
    from faceattr.models import FaceAttrNet
    from faceattr.training.engine import fit

    config = tiny_config(data_root, tmp_path / "run", "train.threshold_metric=f1", "optim.epochs=1")
    fit(config)
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    _, val_loader = build_loaders(build_data(config.data), config.data, config.train.seed)
    network = FaceAttrNet(**best["model_args"])
    network.load_state_dict(best["model"])
    predictions = predict_loader(network.eval(), val_loader, torch.device("cpu"), amp=False)
    probs = apply_calibration(predictions.logits, np.array(best["temperatures"]), np.array(best["offsets"]))
    labels, mask = predictions.attribute_labels, predictions.attribute_mask
    stored = np.array(best["thresholds"])
    np.testing.assert_allclose(stored, fit_thresholds(probs, labels, mask, metric="f1"), atol=1e-6)

    def f1(index: int, threshold: float) -> float:
        known = mask[:, index]
        called, truth = probs[known, index] >= threshold, labels[known, index] == 1
        return 2 * (called & truth).sum() / max(called.sum() + truth.sum(), 1)

    tuned = [i for i in range(40) if 0 < labels[mask[:, i], i].sum() < mask[:, i].sum()]
    assert tuned  # the generated faces have attributes with both labels in validation
    for i in tuned:
        assert all(f1(i, stored[i]) >= f1(i, t) - 1e-12 for t in [*np.unique(probs[mask[:, i], i]), 0.5, 1.1])
    assert not np.allclose(stored[tuned], fit_thresholds(probs, labels, mask)[tuned])  # not balanced accuracy's


def test_skip_mode_trains_past_a_corrupt_image_and_leaves_it_out(tmp_path, caplog):
    from faceattr.data.readers.celeba import read_celeba
    from faceattr.training.engine import fit

    make_celeba(tmp_path / "celeba", identities=12, images_per_identity=3, seed=1)
    records = read_celeba(tmp_path / "celeba").records
    corrupt = [next(r for r in records if r.split == split) for split in ("train", "val")]
    for record in corrupt:
        Path(record.path).write_bytes(b"not an image")
    config = tiny_config(tmp_path, tmp_path / "run", "data.on_bad_sample=skip", "optim.epochs=1", sources=("celeba",))
    with caplog.at_level("WARNING", logger="faceattr.data.dataset"):
        evaluation = fit(config)
    assert evaluation["meta"]["images"] == sum(r.split == "val" for r in records) - 1
    skipped = {record.message.split(":")[0] for record in caplog.records if record.message.startswith("skipping")}
    assert {f"skipping {corrupt[1].path}"} <= skipped


def test_channels_last_changes_the_layout_not_the_training(data_root, tmp_path, monkeypatch):
    import faceattr.training.engine as engine

    real_step, layouts = engine.train_step, []

    def noting_the_layout(parts, batch, config, **kwargs):
        conv_weight = next(p for p in parts.model.parameters() if p.dim() == 4)
        layouts.append(conv_weight.is_contiguous(memory_format=torch.channels_last))
        return real_step(parts, batch, config, **kwargs)

    monkeypatch.setattr(engine, "train_step", noting_the_layout)
    for layout in ("false", "true"):
        engine.fit(tiny_config(data_root, tmp_path / layout, f"train.channels_last={layout}", "optim.epochs=1"))
    assert layouts == [False] * 3 + [True] * 3
    contiguous, channels_last = final_weights(tmp_path / "false"), final_weights(tmp_path / "true")
    for key in contiguous:  # the same arithmetic in another order: equal up to rounding
        torch.testing.assert_close(channels_last[key], contiguous[key], rtol=1e-4, atol=1e-4, msg=key)
