"""The command-line tools: train and benchmark entry points, exit codes and messages."""

import json
import sys
from pathlib import Path

import pytest

from faceattr.synthetic.fixtures import make_celeba

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import benchmark_train  # noqa: E402
import make_holdout  # noqa: E402
import train  # noqa: E402


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


def test_train_tool_trains_and_prints_the_summary(config_file, capsys):
    assert train.main([str(config_file)]) == 0
    assert "mean balanced accuracy" in capsys.readouterr().out


def test_train_tool_exits_2_with_the_key_on_a_bad_override(config_file, capsys):
    assert train.main([str(config_file), "optim.lr=fast"]) == 2
    assert "optim.lr: expected a number" in capsys.readouterr().err


def test_train_tool_exits_2_naming_the_missing_dataset_file(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(f"data: {{sources: [{{kind: celeba, root: {tmp_path / 'nowhere'}}}]}}\n"
                    f"train: {{output_dir: {tmp_path / 'run'}}}\n")
    assert train.main([str(path)]) == 2
    assert "list_attr_celeba.txt" in capsys.readouterr().err


def test_benchmark_saves_a_table_of_the_three_rates(config_file, tmp_path):
    assert benchmark_train.main([str(config_file), "--steps", "2", "--warmup", "1", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "train_throughput_tiny.json").read_text())
    assert all(row[key] > 0 for key in ("data_images_per_s", "step_images_per_s", "loop_images_per_s"))
    assert "loop / slower" in (tmp_path / "train_throughput_tiny.md").read_text()


def test_make_holdout_picks_whole_people_covering_the_fraction(tmp_path, capsys):
    from faceattr.data.loader import read_groups
    from faceattr.data.sources import read_source
    from faceattr.config import SourceConfig

    root = make_celeba(tmp_path / "celeba", identities=12, images_per_identity=3, seed=4)
    out = tmp_path / "held.txt"
    assert make_holdout.main(["celeba", str(root), "--fraction", "0.3", "--out", str(out)]) == 0
    held = read_groups(out)
    groups = [r.group for r in read_source(SourceConfig(kind="celeba", root=str(root))).records if r.split != "test"]
    share = sum(group in held for group in groups) / len(groups)
    assert held <= set(groups) and 0.3 <= share < 0.3 + 3 / len(groups) + 1e-9  # stops at the first person past 30%
    assert make_holdout.main(["celeba", str(root), "--fraction", "0.3", "--out", str(tmp_path / "again.txt")]) == 0
    assert read_groups(tmp_path / "again.txt") == held  # seeded
    assert make_holdout.main(["celeba", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "nowhere" in capsys.readouterr().err
