"""Shared test fixtures: the real data folder (skipped when absent), small generated datasets, the tools run as
scripts, quiet CPU settings."""

import contextlib
import runpy
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from faceattr.config import Config
from faceattr.models.deployed import DeployedModel
from faceattr.models.net import FaceAttrNet
from faceattr.models.weights_io import save_checkpoint
from faceattr.synthetic.fixtures import make_celeba, make_celebahq, make_scut

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

torch.set_num_threads(2)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def start_local_ray(num_cpus: int) -> None:
    """Starts a local Ray whose workers import this checkout's faceattr, wherever another one is installed."""
    import os

    import ray

    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})


@dataclass
class ToolRun:
    """What a tool run gave: its exit status and what it printed."""

    status: int
    out: str
    err: str


@pytest.fixture
def run_tool(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Callable[..., ToolRun]:
    """Runs ``python tools/NAME.py ARGS`` in this process, as Python runs a script (``runpy``,
    ``__name__ == "__main__"``), so a tool's wiring is checked without paying for a new interpreter
    and torch import each time."""

    def run(name: str, *args: object) -> ToolRun:
        script = REPO / "tools" / f"{name}.py"
        monkeypatch.setattr(sys, "argv", [str(script), *map(str, args)])
        capsys.readouterr()
        status = 0
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as stop:
            if isinstance(stop.code, str):  # what the interpreter does with sys.exit("message")
                print(stop.code, file=sys.stderr)
            status = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        printed = capsys.readouterr()
        return ToolRun(status, printed.out, printed.err)

    return run


@pytest.fixture(scope="module")
def predictor():
    """The shipped default model on the CPU (a :class:`~faceattr.inference.predictor.Predictor`), once per module."""
    from faceattr.inference.predictor import Predictor

    return Predictor(device="cpu")


@pytest.fixture(scope="module")
def photo() -> bytes:
    """``examples/astronaut.jpg``'s bytes, as a client uploads them."""
    from serve_client import ASTRONAUT

    return ASTRONAUT.read_bytes()


@pytest.fixture(scope="session")
def tiny_config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny.yaml``: a ResNet-10-T at 32 px on 30 drawn CelebA faces, one epoch of two steps."""
    root = tmp_path_factory.mktemp("tiny")
    make_celeba(root / "celeba", identities=10, images_per_identity=3, seed=2)
    path = root / "tiny.yaml"
    path.write_text(f"""
data: {{sources: [{{kind: celeba, root: {root / 'celeba'}}}], image_size: 32, batch_size: 4, workers: 0}}
model: {{backbone: resnet10t}}
optim: {{epochs: 1}}
train: {{output_dir: {root / 'run'}, amp: false, channels_last: false, max_steps_per_epoch: 2}}
""")
    return path


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


def chromium() -> str:
    """Debian's ``chromium`` for the pages' browser tests; skips where it is missing, fails where CI should
    have installed it."""
    import os
    import shutil

    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not on PATH: .ci/run installs it with apt-get")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


@contextlib.contextmanager
def app_in_thread(app: object, port: int | None = None) -> Iterator[str]:
    """``app`` (an ASGI app) under uvicorn in a thread on 127.0.0.1 until the block ends: its URL.

    The app's start-up (the model loading) has run when the block starts; its shut-down when it ends.
    """
    import uvicorn

    from faceattr.localhost import free_port

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                          timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


#: The throwaway PostgreSQL server's URL, set by `.ci/postgres` (CI starts one; locally:
#: ``eval "$(bash .ci/postgres)"``).
POSTGRES_URL_VARIABLE = "FACEATTR_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def label_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty labelling database: a SQLite file, then the PostgreSQL server of `.ci/postgres` (emptied
    first). Without that server the PostgreSQL case skips, except in CI (``CI=true``), where it fails."""
    import os

    if request.param == "sqlite":
        return str(tmp_path / "labels.db")
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        message = f"no PostgreSQL server: {POSTGRES_URL_VARIABLE} is not set (start one: eval \"$(bash .ci/postgres)\")"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from sqlalchemy import create_engine

    from faceattr.label.store import Base

    engine = create_engine(url)
    Base.metadata.drop_all(engine)
    engine.dispose()
    return url
