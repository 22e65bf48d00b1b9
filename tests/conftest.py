"""Shared test fixtures: the real data folder (skipped when absent), small generated datasets, quiet CPU settings."""

from pathlib import Path

import pytest
import torch

from faceattr.models.deployed import DeployedModel
from faceattr.models.weights_io import save_checkpoint
from faceattr.config import Config
from faceattr.synthetic.fixtures import make_celeba, make_celebahq, make_scut
from faceattr.models.net import FaceAttrNet

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(2)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def untrained_checkpoint(path: Path, thresholds: list[float] | None = None) -> Path:
    """Writes a deployable checkpoint of an untrained ResNet-10-T at 64 px (thresholds 0.5 unless given)."""
    torch.manual_seed(0)
    config = Config()
    config.data.image_size = 64
    save_checkpoint(DeployedModel.from_training(FaceAttrNet("resnet10t"), thresholds or [0.5] * 40, config, 0,
                                                {}).to_checkpoint(), path)
    return path


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ResNet-10-T checkpoint at 64 px with thresholds 0.5: for the prediction path, not its answers."""
    return untrained_checkpoint(tmp_path_factory.mktemp("model") / "best.pt")


@pytest.fixture(scope="session")
def celeba_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated CelebA folder: 10 people, 3 images each, about a fifth of the images missing."""
    return make_celeba(tmp_path_factory.mktemp("celeba"), identities=10, images_per_identity=3, seed=1,
                       missing_fraction=0.2)


@pytest.fixture(scope="session")
def hq_root(celeba_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated CelebA-HQ folder of 12 images at 16 px, drawn from :func:`celeba_root`."""
    return make_celebahq(tmp_path_factory.mktemp("hq"), celeba_root, count=12, size=16)


@pytest.fixture(scope="session")
def scut_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated SCUT-FBP5500 folder of 60 images at 16 px."""
    return make_scut(tmp_path_factory.mktemp("scut"), count=60, size=16)
