"""The distribution: `python -m build` gives a wheel and an sdist that carry the whole package,
and the wheel, installed outside the repository, predicts with the shipped model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import faceattr

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "faceattr"

#: Files other than modules that the installed package needs.
DATA_FILES = ("faceattr/py.typed", "faceattr/weights/default.safetensors", "faceattr/weights/default.json")


def package_modules() -> set[str]:
    """Every module of the source tree, as a path inside a wheel."""
    return {path.relative_to(REPO).as_posix() for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts}


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel, built from the checkout as a release is."""
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation builds with this environment's setuptools: no download.
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
                   check=True, capture_output=True, text=True, timeout=300)
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


def test_wheel_carries_every_module_and_data_file_and_nothing_else(dist):
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    assert dist["wheel"].name == f"faceattr-{faceattr.__version__}-py3-none-any.whl"
    assert package_modules() - names == set()
    assert set(DATA_FILES) <= names
    assert not [name for name in names if name.startswith(("tests/", "tools/", "configs/")) or "__pycache__" in name]


def test_sdist_carries_the_package_and_its_data(dist):
    prefix = f"faceattr-{faceattr.__version__}/"
    names = {name.removeprefix(prefix) for name in tarfile.open(dist["sdist"]).getnames()}
    assert package_modules() - names == set()
    assert set(DATA_FILES) <= names


def test_wheel_installed_outside_the_repository_predicts_with_the_shipped_model(dist, tmp_path):
    venv = tmp_path / "venv"
    # System site-packages lend torch and the other dependencies; faceattr itself comes from the wheel.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(dist["wheel"])],
                   check=True, capture_output=True, timeout=300)
    photo = tmp_path / "photo.jpg"
    shutil.copy(REPO / "examples" / "astronaut.jpg", photo)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    where = subprocess.run([str(python), "-c", "import faceattr; print(faceattr.__file__)"], cwd=tmp_path, env=env,
                           check=True, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(venv)
    run = subprocess.run([str(venv / "bin" / "faceattr"), "predict", str(photo)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "face 1" in run.stdout and "beauty" in run.stdout
