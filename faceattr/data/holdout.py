"""Choosing whole people (groups) of a data source to hold out of training: the ``data.holdout_groups`` file.

The groups are drawn in a seeded random order until their images reach a fraction of the
source's (non-test) images, so that no person has images on both sides. tools/make_holdout.py
is the command.

>>> pick_groups(["a", "a", "b", "c", "c", "d"], 0.3, seed=1)
['a']
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceattr.config import SourceConfig
from faceattr.data.sources import read_source
from faceattr.errors import ConfigError


@dataclass(frozen=True)
class Holdout:
    """The groups written by :func:`write_holdout` and how much of the source they cover.

    Attributes:
        groups: The held-out groups, sorted.
        total_groups: The source's groups (test split left out).
        held_images: Images of the held-out groups.
        total_images: The source's images (test split left out).
    """

    groups: list[str]
    total_groups: int
    held_images: int
    total_images: int


def pick_groups(groups: list[str], fraction: float, seed: int) -> list[str]:
    """Whole groups, in a seeded random order, until their images reach ``fraction`` of ``groups``.

    Args:
        groups: Each image's group (repeated for a person's several images).
        fraction: Share of the images to cover, in (0, 1).
        seed: Seed of the order.

    Returns:
        The chosen groups, sorted.

    >>> pick_groups(["a", "a", "b", "c"], 0.5, seed=0)
    ['a', 'c']
    """
    counts = Counter(groups)
    order = sorted(counts)
    np.random.default_rng(seed).shuffle(order)
    chosen, covered = [], 0
    for group in order:
        if covered >= fraction * len(groups):
            break
        chosen.append(group)
        covered += counts[group]
    return sorted(chosen)


def write_holdout(source: SourceConfig, out: str | Path, fraction: float, seed: int = 0) -> Holdout:
    """Picks the groups of ``source`` to hold out and writes them, one per line, to ``out``.

    The test split is left out of the count (training never reads it). The file starts with
    a ``#`` line saying what was picked from what, and its folder is created.

    Args:
        source: The data source (its kind, root and images folder).
        out: The text file to write.
        fraction: Share of the images to hold out, in (0, 1).
        seed: Seed of the random order of groups.

    Returns:
        What was held out.

    Raises:
        ConfigError: If ``fraction`` is not in (0, 1).
        DatasetError: If the source cannot be read.

    >>> write_holdout(SourceConfig(kind="celeba", root="../data/celeba"), "held.txt", 0.3)  # doctest: +SKIP
    Holdout(groups=['10', '1033', ...], total_groups=10133, held_images=48831, total_images=182637)
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"--fraction must be in (0, 1), got {fraction}")
    groups = [record.group for record in read_source(source).records if record.split != "test"]
    chosen = pick_groups(groups, fraction, seed)
    held = sum(group in set(chosen) for group in groups)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# {len(chosen)} of {len(set(groups))} groups, {held} of {len(groups)} images of "
              f"{source.kind} {source.root} {source.images or ''}; tools/make_holdout.py --fraction {fraction} "
              f"--seed {seed}\n")
    out.write_text(header + "".join(f"{group}\n" for group in chosen))
    return Holdout(chosen, len(set(groups)), held, len(groups))
