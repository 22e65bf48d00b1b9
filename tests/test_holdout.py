"""faceattr.data.holdout: whole people held out, covering the fraction asked for, seeded."""

import pytest

from faceattr.config import SourceConfig
from faceattr.data.holdout import pick_groups, write_holdout
from faceattr.data.loader import read_groups
from faceattr.data.sources import read_source
from faceattr.errors import ConfigError, DatasetError
from faceattr.synthetic.fixtures import make_celeba


def test_pick_groups_takes_whole_groups_until_the_fraction_is_reached():
    groups = ["a"] * 5 + ["b"] * 3 + ["c"] * 2
    for seed in range(5):
        chosen = pick_groups(groups, 0.4, seed)
        covered = sum(group in chosen for group in groups)
        assert chosen == sorted(chosen) and covered >= 4
        assert any(covered - groups.count(group) < 4 for group in chosen)  # stops at the first group past 40%


def test_write_holdout_picks_whole_people_covering_the_fraction(tmp_path):
    root = make_celeba(tmp_path / "celeba", identities=12, images_per_identity=3, seed=4)
    source = SourceConfig(kind="celeba", root=str(root))
    held = write_holdout(source, tmp_path / "sub" / "held.txt", 0.3)
    groups = [r.group for r in read_source(source).records if r.split != "test"]
    written = read_groups(tmp_path / "sub" / "held.txt")
    assert written == set(held.groups) <= set(groups)
    assert (held.total_groups, held.total_images) == (len(set(groups)), len(groups))
    assert held.held_images == sum(group in written for group in groups)
    assert 0.3 <= held.held_images / len(groups) < 0.3 + 3 / len(groups) + 1e-9
    assert write_holdout(source, tmp_path / "again.txt", 0.3).groups == held.groups  # seeded
    assert write_holdout(source, tmp_path / "other.txt", 0.3, seed=1).groups != held.groups


def test_write_holdout_refuses_a_bad_fraction_or_source(tmp_path):
    with pytest.raises(ConfigError, match=r"--fraction must be in \(0, 1\), got 1.5"):
        write_holdout(SourceConfig(kind="celeba", root=str(tmp_path)), tmp_path / "held.txt", 1.5)
    with pytest.raises(DatasetError, match="nowhere"):
        write_holdout(SourceConfig(kind="celeba", root=str(tmp_path / "nowhere")), tmp_path / "held.txt", 0.5)
    assert not (tmp_path / "held.txt").exists()
