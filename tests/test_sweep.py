"""faceattr.training.sweep on generated data: variants, SCUT folds, skipping and resuming, early errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from faceattr.config import load_config
from faceattr.errors import ConfigError, FaceAttrError
from faceattr.models.weights_io import load_checkpoint
from faceattr.synthetic.fixtures import make_celeba, make_scut
from faceattr.training import engine
from faceattr.training.sweep import plan, run_sweep

TWO_VARIANTS = [["bce", "loss.attributes=bce"], ["gamma1", "loss.focal_gamma=1"]]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    """A one-epoch, two-step config on a generated CelebA and SCUT (3 folds)."""
    root = tmp_path_factory.mktemp("sweep")
    make_celeba(root / "celeba", identities=12, images_per_identity=3, seed=3)
    make_scut(root / "scut", count=24, size=16, seed=3)
    path = root / "tiny.yaml"
    path.write_text(f"""
data: {{sources: [{{kind: celeba, root: {root / 'celeba'}}}, {{kind: scut, root: {root / 'scut'}, folds: 3}}],
       image_size: 32, batch_size: 8, workers: 0}}
model: {{backbone: resnet10t}}
optim: {{epochs: 1, lr: 0.01, warmup_epochs: 0.5}}
train: {{amp: false, channels_last: false, max_steps_per_epoch: 2}}
""")
    return path


@pytest.fixture(scope="module")
def two_variants(config_file):
    """A finished sweep of two loss variants; returns its folder."""
    out = config_file.parent / "two"
    run_sweep(config_file, TWO_VARIANTS, [], None, out, command="python tools/sweep.py tiny.yaml ...")
    return out


@pytest.fixture
def fit_calls(monkeypatch):
    """Records engine.fit calls as (output folder, resume, config) instead of training."""
    calls = []
    monkeypatch.setattr(engine, "fit", lambda config, resume=False, overwrite=False: calls.append(
        (Path(config.train.output_dir), resume, config)))
    return calls


def test_each_variant_trains_its_own_config_and_its_row_holds_its_best_checkpoint(two_variants):
    out = two_variants
    summary = json.loads((out / "sweep.json").read_text())
    assert [v["name"] for v in summary["variants"]] == ["bce", "gamma1"]
    assert load_config(out / "bce" / "config.yaml").loss.attributes == "bce"
    assert load_config(out / "gamma1" / "config.yaml").loss.focal_gamma == 1.0
    for variant in summary["variants"]:
        best = load_checkpoint(out / variant["name"] / "best.pt")
        history = [json.loads(line) for line in (out / variant["name"] / "metrics.jsonl").read_text().splitlines()]
        row = variant["mean"]
        assert row["balanced_accuracy"] == best["metrics"]["attribute_means"]["balanced_accuracy"]
        assert row["balanced_accuracy_at_0.5"] == best["metrics"]["attribute_means_at_0.5"]["balanced_accuracy"]
        assert row["beauty_rmse"] == best["metrics"]["beauty"]["rmse"]
        assert row["epochs"] == len(history) == 1 and row["seconds"] == history[0]["seconds"]
        assert row["parameters"] == sum(t.numel() for k, t in best["model"].items() if "running" not in k
                                        and "num_batches" not in k)
        assert variant["std"] is None
    markdown = (out / "sweep.md").read_text()
    assert "Repeat: `python tools/sweep.py tiny.yaml ...`" in markdown
    assert f"| bce | `loss.attributes=bce` | {summary['variants'][0]['mean']['balanced_accuracy']:.3f} |" in markdown


def test_a_rerun_skips_finished_runs(two_variants, config_file, fit_calls):
    out = two_variants
    (out / "sweep.md").unlink()
    summary = run_sweep(config_file, TWO_VARIANTS, [], None, out)
    assert fit_calls == []
    assert (out / "sweep.md").is_file() and [v["name"] for v in summary["variants"]] == ["bce", "gamma1"]


def test_more_epochs_resume_the_finished_runs(two_variants, config_file, fit_calls):
    out = two_variants
    run_sweep(config_file, TWO_VARIANTS, ["optim.epochs=2"], None, out)  # the stub trains nothing: table as before
    assert [(folder, resume) for folder, resume, _ in fit_calls] == [(out / "bce", True), (out / "gamma1", True)]
    assert all(config.optim.epochs == 2 for _, _, config in fit_calls)


def test_a_finished_run_made_with_other_settings_stops_the_sweep(two_variants, config_file, fit_calls):
    with pytest.raises(ConfigError, match="optim.lr"):
        run_sweep(config_file, TWO_VARIANTS, ["optim.lr=0.02"], None, two_variants)
    assert fit_calls == []


def test_folds_train_each_scut_fold_and_report_mean_and_spread(config_file, tmp_path):
    out = tmp_path / "cv"
    run_sweep(config_file, [["joint"]], [], 2, out)
    folds = [load_config(out / "joint" / f"fold{k}" / "config.yaml").data.sources[1] for k in (0, 1)]
    assert [(source.folds, source.fold) for source in folds] == [(2, 0), (2, 1)]
    variant = json.loads((out / "sweep.json").read_text())["variants"][0]
    assert [run["fold"] for run in variant["runs"]] == [0, 1]
    pearson = [load_checkpoint(out / "joint" / f"fold{k}" / "best.pt")["metrics"]["beauty"]["pearson"] for k in (0, 1)]
    assert variant["mean"]["beauty_pearson"] == pytest.approx(np.mean(pearson))
    assert variant["std"]["beauty_pearson"] == pytest.approx(np.std(pearson, ddof=1))
    assert f"{np.mean(pearson):.3f} ± {np.std(pearson, ddof=1):.3f}" in (out / "sweep.md").read_text()


def test_an_unknown_key_in_a_variant_stops_before_any_training(config_file, tmp_path, fit_calls):
    with pytest.raises(ConfigError, match="variant 'typo'.*loss.atributes"):
        run_sweep(config_file, [["good", "loss.attributes=bce"], ["typo", "loss.atributes=bce"]], [], None,
                  tmp_path / "bad")
    assert fit_calls == [] and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("variants, folds, jobs, message", [
    ([["a"], ["a"]], None, 1, "'a': given twice"), ([["../up"]], None, 1, "variant's name"),
    ([["a"]], 1, 1, "2 folds or more"), ([["a"]], None, 0, "--jobs: must be 1 or more")])
def test_bad_variants_folds_or_jobs_are_refused_before_any_training(config_file, tmp_path, fit_calls, variants, folds,
                                                                     jobs, message):
    with pytest.raises(ConfigError, match=message):
        run_sweep(config_file, variants, [], folds, tmp_path / "bad", jobs)
    assert fit_calls == [] and not (tmp_path / "bad").exists()


def test_folds_without_a_scut_or_csv_source_are_refused(config_file, tmp_path, fit_calls):
    celeba_only = f"data.sources=[{{kind: celeba, root: {config_file.parent / 'celeba'}}}]"
    with pytest.raises(ConfigError, match="no scut or csv source"):
        run_sweep(config_file, [["attrs", celeba_only]], [], 2, tmp_path)
    assert fit_calls == []


def test_the_tool_reports_a_refused_sweep_on_stderr_with_exit_status_2(config_file, tmp_path, run_tool):
    result = run_tool("sweep", config_file, "--out", tmp_path / "bad", "--variant", "typo", "loss.atributes=bce")
    assert result.status == 2 and "error: variant 'typo'" in result.err and "loss.atributes" in result.err


def test_folds_also_set_the_folds_of_csv_sources(config_file, tmp_path):
    sources = "data.sources=[{kind: celeba, root: c}, {kind: csv, root: packed/s3_scut.csv}, {kind: scut, root: s}]"
    runs = plan(config_file, [["packed", sources]], [], 3, tmp_path)
    assert [[(s.kind, s.folds, s.fold) for s in run.config.data.sources] for run in runs] == [
        [("celeba", 5, 0), ("csv", 3, fold), ("scut", 3, fold)] for fold in range(3)]


def test_parallel_jobs_train_the_same_runs_in_their_own_processes(two_variants, config_file, tmp_path):
    sequential = two_variants
    out = tmp_path / "parallel"
    run_sweep(config_file, TWO_VARIANTS, [], None, out, jobs=2)
    for name in ("bce", "gamma1"):
        assert "epoch 1" in (out / name / "train.log").read_text()
        ours, theirs = (load_checkpoint(folder / name / "best.pt")["model"] for folder in (out, sequential))
        for key in theirs:
            torch.testing.assert_close(ours[key], theirs[key], rtol=1e-4, atol=1e-5, msg=key)
    assert json.loads((out / "sweep.json").read_text())["variants"][1]["name"] == "gamma1"


def test_a_failed_parallel_run_is_named_with_its_log_and_the_others_finish(config_file, tmp_path):
    out = tmp_path / "failing"
    with pytest.raises(FaceAttrError, match="1 run") as raised:
        run_sweep(config_file, [["fine"], ["broken", f"data.sources.0.root={tmp_path / 'nowhere'}"]], [], None, out,
                  jobs=2)
    error = str(raised.value)
    assert "broken" in error and str(out / "broken" / "train.log") in error and "fine" not in error
    assert (out / "fine" / "best.pt").is_file()
    assert "nowhere" in (out / "broken" / "train.log").read_text()
