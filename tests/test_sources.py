"""Tests of reading a configured source by its kind, and of tools/check_dataset.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from faceattr.config import SourceConfig
from faceattr.data.sources import read_source
from faceattr.errors import ConfigError
from faceattr.synthetic.fixtures import make_csv

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def test_read_source_reads_every_kind(celeba_root: Path, hq_root: Path, scut_root: Path, tmp_path: Path) -> None:
    csv_path = make_csv(tmp_path / "team.csv", tmp_path / "photos", count=4)
    sources = [SourceConfig(kind="celeba", root=str(celeba_root)),
               SourceConfig(kind="celebahq", root=str(hq_root), celeba_root=str(celeba_root)),
               SourceConfig(kind="scut", root=str(scut_root), folds=3, fold=1),
               SourceConfig(kind="csv", root=str(csv_path), val_fraction=1.0)]
    results = [read_source(source) for source in sources]
    assert [r.source for r in results] == ["celeba", "celebahq", "scut", "csv:team"]
    assert sum(r.split == "val" for r in results[2].records) == 20
    assert {r.split for r in results[3].records} == {"val"}


def test_read_source_rejects_an_unknown_kind_or_empty_root() -> None:
    with pytest.raises(ConfigError, match="'lfw' is not one of celeba, celebahq, scut, csv"):
        read_source(SourceConfig(kind="lfw", root="x"))
    with pytest.raises(ConfigError, match="has no root"):
        read_source(SourceConfig(kind="celeba"))


def load_check_dataset():
    spec = importlib.util.spec_from_file_location("check_dataset", TOOLS / "check_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_dataset_reports_a_usable_dataset(celeba_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert load_check_dataset().main(["celeba", str(celeba_root)]) == 0
    out = capsys.readouterr().out
    found = len(list((celeba_root / "img_align_celeba").iterdir()))
    assert "list_attr_celeba.txt" in out and f"images found:      {found}" in out and "OK: usable" in out


def test_check_dataset_exits_1_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert load_check_dataset().main(["scut", str(tmp_path)]) == 1
    assert "NOT USABLE" in capsys.readouterr().err
