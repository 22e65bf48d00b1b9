"""The command-line tools, run as scripts: exit codes, messages and what they write, end to end.

Their logic is tested in the package (tests/test_pack_dataset.py, test_holdout.py, ...); here
each script is run as a user runs it, so that its arguments still reach that logic.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from faceattr.data.loader import read_groups
from faceattr.synthetic.fixtures import make_celeba, make_csv

REPO = Path(__file__).resolve().parents[1]
#: The tools whose --help must answer (the others are run in full below).
HELP_ONLY = ["align_dataset", "benchmark_detect", "benchmark_predict", "check_dataset", "make_fixtures",
             "measure_alignment", "measure_hq_crop", "webcam_demo"]


def tool(name: str, *args: object, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs ``python tools/NAME.py ARGS`` from the repository root, importing this checkout's faceattr."""
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "tools" / f"{name}.py"), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools")
    make_celeba(root / "celeba", identities=10, images_per_identity=3, seed=2)
    path = root / "tiny.yaml"
    path.write_text(f"""
data: {{sources: [{{kind: celeba, root: {root / 'celeba'}}}], image_size: 32, batch_size: 4, workers: 0}}
model: {{backbone: resnet10t}}
optim: {{epochs: 1}}
train: {{output_dir: {root / 'run'}, amp: false, channels_last: false, max_steps_per_epoch: 2}}
""")
    return path


@pytest.mark.parametrize("name", HELP_ONLY)
def test_tool_help_answers(name):
    result = tool(name, "--help", timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage: ") and f"{name}.py" in result.stdout


def test_train_tool_trains_and_prints_the_summary(config_file):
    result = tool("train", config_file)
    assert result.returncode == 0, result.stderr
    assert "mean balanced accuracy" in result.stdout


def test_train_tool_exits_2_with_the_key_on_a_bad_override(config_file):
    result = tool("train", config_file, "optim.lr=fast")
    assert result.returncode == 2 and "optim.lr: expected a number" in result.stderr


def test_train_tool_exits_2_naming_the_missing_dataset_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"data: {{sources: [{{kind: celeba, root: {tmp_path / 'nowhere'}}}]}}\n"
                    f"train: {{output_dir: {tmp_path / 'run'}}}\n")
    result = tool("train", path)
    assert result.returncode == 2 and "list_attr_celeba.txt" in result.stderr


def test_benchmark_saves_a_table_of_the_three_rates(config_file, tmp_path):
    result = tool("benchmark_train", config_file, "--steps", "2", "--warmup", "1", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    row = json.loads((tmp_path / "train_throughput_tiny.json").read_text())
    assert all(row[key] > 0 for key in ("data_images_per_s", "step_images_per_s", "loop_images_per_s"))
    assert "loop / slower" in (tmp_path / "train_throughput_tiny.md").read_text()


def test_make_holdout_writes_the_groups_and_exits_2_on_a_bad_source(tmp_path):
    root = make_celeba(tmp_path / "celeba", identities=12, images_per_identity=3, seed=4)
    out = tmp_path / "held.txt"
    result = tool("make_holdout", "celeba", root, "--fraction", "0.3", "--out", out)
    assert result.returncode == 0, result.stderr
    held = read_groups(out)
    assert held and result.stdout.startswith(f"held out {len(held)} of ") and str(out) in result.stdout
    result = tool("make_holdout", "celeba", tmp_path / "nowhere", "--out", out)
    assert result.returncode == 2 and "nowhere" in result.stderr
    result = tool("make_holdout", "celeba", root, "--fraction", "1", "--out", out)
    assert result.returncode == 2 and "--fraction must be in (0, 1), got 1.0" in result.stderr


def test_pack_dataset_packs_then_refuses_other_settings(tmp_path):
    make_csv(tmp_path / "team.csv", tmp_path / "photos", count=4)
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{sources: [{{kind: csv, root: {tmp_path / 'team.csv'}}}], image_size: 16}}\n")
    result = tool("pack_dataset", config, tmp_path / "out", "--workers", "1", "--format", "png")
    assert result.returncode == 0, result.stderr
    assert "s0_csv_team: 4 faces (4 written, 0 already there)" in result.stdout
    assert f"sources: {tmp_path / 'out' / 'sources.yaml'}" in result.stdout
    result = tool("pack_dataset", config, tmp_path / "out", "data.image_size=24")
    assert result.returncode == 2 and "packed with other settings (format, quality, image_size)" in result.stderr
