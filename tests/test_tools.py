"""The command-line tools, run as scripts (the ``run_tool`` fixture): exit codes, messages and what they write.

Their logic is tested in the package (tests/test_pack_dataset.py, test_holdout.py, ...); here
each script is run as a user runs it, so that its arguments still reach that logic.
"""

import json

import pytest

from faceattr.data.loader import read_groups
from faceattr.synthetic.fixtures import make_celeba, make_csv

#: The tools whose --help must answer (the others are run in full below).
HELP_ONLY = ["align_dataset", "benchmark_detect", "benchmark_predict", "benchmark_serve", "check_dataset",
             "make_fixtures", "measure_alignment", "measure_hq_crop", "webcam_demo"]


@pytest.mark.parametrize("name", HELP_ONLY)
def test_tool_help_answers(name, run_tool):
    result = run_tool(name, "--help")
    assert result.status == 0 and result.out.startswith("usage: ") and f"{name}.py" in result.out


def test_train_tool_trains_and_prints_the_summary(tiny_config_file, run_tool):
    result = run_tool("train", tiny_config_file)
    assert result.status == 0, result.err
    assert "mean balanced accuracy" in result.out


def test_train_tool_exits_2_with_the_key_on_a_bad_override(tiny_config_file, run_tool):
    result = run_tool("train", tiny_config_file, "optim.lr=fast")
    assert result.status == 2 and "optim.lr: expected a number" in result.err


def test_train_tool_exits_2_naming_the_missing_dataset_file(tmp_path, run_tool):
    path = tmp_path / "c.yaml"
    path.write_text(f"data: {{sources: [{{kind: celeba, root: {tmp_path / 'nowhere'}}}]}}\n"
                    f"train: {{output_dir: {tmp_path / 'run'}}}\n")
    result = run_tool("train", path)
    assert result.status == 2 and "list_attr_celeba.txt" in result.err


def test_benchmark_saves_a_table_of_the_three_rates(tiny_config_file, tmp_path, run_tool):
    result = run_tool("benchmark_train", tiny_config_file, "--steps", "2", "--warmup", "1", "--out", tmp_path)
    assert result.status == 0, result.err
    row = json.loads((tmp_path / "train_throughput_tiny.json").read_text())
    assert all(row[key] > 0 for key in ("data_images_per_s", "step_images_per_s", "loop_images_per_s"))
    assert "loop / slower" in (tmp_path / "train_throughput_tiny.md").read_text()


def test_make_holdout_writes_the_groups_and_exits_2_on_a_bad_source(tmp_path, run_tool):
    root = make_celeba(tmp_path / "celeba", identities=12, images_per_identity=3, seed=4)
    out = tmp_path / "held.txt"
    result = run_tool("make_holdout", "celeba", root, "--fraction", "0.3", "--out", out)
    assert result.status == 0, result.err
    held = read_groups(out)
    assert held and result.out.startswith(f"held out {len(held)} of ") and str(out) in result.out
    result = run_tool("make_holdout", "celeba", tmp_path / "nowhere", "--out", out)
    assert result.status == 2 and "nowhere" in result.err
    result = run_tool("make_holdout", "celeba", root, "--fraction", "1", "--out", out)
    assert result.status == 2 and "--fraction must be in (0, 1), got 1.0" in result.err


def test_pack_dataset_packs_then_refuses_other_settings(tmp_path, run_tool):
    make_csv(tmp_path / "team.csv", tmp_path / "photos", count=4)
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{sources: [{{kind: csv, root: {tmp_path / 'team.csv'}}}], image_size: 16}}\n")
    result = run_tool("pack_dataset", config, tmp_path / "out", "--workers", "1", "--format", "png")
    assert result.status == 0, result.err
    assert "s0_csv_team: 4 faces (4 written, 0 already there)" in result.out
    assert f"sources: {tmp_path / 'out' / 'sources.yaml'}" in result.out
    result = run_tool("pack_dataset", config, tmp_path / "out", "data.image_size=24")
    assert result.status == 2 and "packed with other settings (format, quality, image_size)" in result.err
