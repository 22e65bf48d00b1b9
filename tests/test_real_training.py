"""Real-data check (slow): a short CPU run on ../shared/data learns the easy attributes.

Run with ``python -m pytest -m slow`` (about 6 minutes on 2 CPU cores).
"""

from pathlib import Path

import pytest

from faceattr.config import load_config

REPO = Path(__file__).resolve().parents[1]

#: Attributes that any working face model gets right early, with the balanced accuracy a
#: short run must clearly exceed (chance is 0.5).
EASY = {"Male": 0.8, "Eyeglasses": 0.75, "Smiling": 0.6, "Bald": 0.7}


@pytest.mark.slow
@pytest.mark.real_data
def test_a_short_cpu_run_beats_chance_on_easy_attributes_on_celeba_validation(shared_data, tmp_path, monkeypatch):
    from faceattr.training.engine import fit

    monkeypatch.chdir(REPO)  # the configs name ../shared/data relative to the repository root
    config = load_config(REPO / "configs" / "resnet18_cpu.yaml", [
        "optim.epochs=3", "data.epoch_size=8000", "data.max_val_samples=2000", f"train.output_dir={tmp_path}"])
    evaluation = fit(config)
    balanced = {name: evaluation["attributes"][name]["balanced_accuracy"] for name in EASY}
    assert all(balanced[name] > floor for name, floor in EASY.items()), balanced
    assert evaluation["beauty"]["pearson"] > 0.3
