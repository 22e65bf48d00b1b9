"""faceattr.training.benchmark: the three throughputs of a config and the saved table."""

import copy
import json

import pytest

from faceattr.training.benchmark import benchmark_training, measure_throughput


def test_measure_gives_three_rates_and_the_serial_bound_and_leaves_the_config_alone(tiny_config_file):
    from faceattr.config import load_config

    config = load_config(tiny_config_file, ["train.ema_decay=0.9"])  # the benchmark measures without the EMA
    before = copy.deepcopy(config)
    figures = measure_throughput(config, steps=2, warmup=1)
    assert config == before  # the loop's step cap is set on a copy
    data, step, loop = figures["data_images_per_s"], figures["step_images_per_s"], figures["loop_images_per_s"]
    assert min(data, step, loop) > 0 and figures["device"] == "cpu" and figures["peak_gpu_memory_gib"] is None
    assert figures["serial_bound_images_per_s"] == pytest.approx(1 / (1 / data + 1 / step))
    assert figures["loop_vs_slower"] == pytest.approx(loop / min(data, step))
    assert figures["loop_vs_serial_bound"] == pytest.approx(loop / figures["serial_bound_images_per_s"])


def test_benchmark_training_saves_the_row_and_a_table_named_after_the_config(tiny_config_file, tmp_path):
    row, table, saved = benchmark_training(tiny_config_file, ["data.batch_size=2"], steps=2, warmup=1, out=tmp_path / "b")
    assert saved == tmp_path / "b" / "train_throughput_tiny"
    assert json.loads(saved.with_name(saved.name + ".json").read_text()) == row
    assert saved.with_name(saved.name + ".md").read_text() == table
    assert row["batch_size"] == 2 and row["overrides"] == "data.batch_size=2" and row["backbone"] == "resnet10t"
    assert table.splitlines()[2].startswith("| tiny.yaml data.batch_size=2 | resnet10t | 32 | 2 | 0 |")


def test_a_bad_override_is_a_config_error_before_anything_runs(tiny_config_file, tmp_path):
    from faceattr.errors import ConfigError

    with pytest.raises(ConfigError, match="model.backbone: 'resnet19'"):
        benchmark_training(tiny_config_file, ["model.backbone=resnet19"], out=tmp_path)
    assert not any(tmp_path.iterdir())
