"""Mixing datasets for training: reading the sources, the weighted sampler and the DataLoaders.

Each configured source is read once; its ``train`` split goes into the training mix and its
``val`` split into validation (official ``test`` splits are never used here: they are for
independent evaluation). Each epoch, :class:`MixingSampler` gives every source its weighted
share of the samples. Augmentation is seeded per sample from ``(seed, epoch, position)``,
so it is the same whatever the number of workers, and a resumed run sees what an
uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, Subset

from faceattr.attributes import NUM_ATTRIBUTES
from faceattr.config import DataConfig
from faceattr.data.dataset import FaceDataset, collate_skipping_none, labels_matrix
from faceattr.data.preload import PreloadedLoader
from faceattr.data.records import FaceRecord
from faceattr.data.sources import read_source
from faceattr.data.transforms import eval_transform, train_transform
from faceattr.errors import ConfigError, DatasetError

logger = logging.getLogger(__name__)

# Tags that keep the sampler's random streams apart for the same (seed, epoch).
_SHUFFLE, _PERMUTATION, _AUGMENTATION = 0, 1, 2


@dataclass
class DataBundle:
    """The datasets of a run and what the loss and the logs need to know about them.

    Attributes:
        train: One :class:`FaceDataset` per source (training split), concatenated.
        val: The same for the validation split, possibly an evenly spread subset.
        train_sizes: Training images per source, in ``train``'s order.
        source_names: Each source's short name (``celeba``, ``scut``, ...).
        source_weights: Each source's share weight in the training mix.
        positive_rate: ``(40,)`` share of positive labels among known ones, as the training
            mix samples them; 0.5 for an attribute no training image has.
        summaries: One line per source: images found and rows left out.
    """

    train: Dataset
    val: Dataset
    train_sizes: list[int]
    source_names: list[str]
    source_weights: list[float]
    positive_rate: np.ndarray
    summaries: list[str]


def _shares(weights: Sequence[float], total: int) -> list[int]:
    """Splits ``total`` in proportion to ``weights``; rounding remainders go to the largest fractions."""
    exact = np.asarray(weights, dtype=np.float64) * total / sum(weights)
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts.tolist()


def _check_leaks(train: dict[str, list[FaceRecord]], val: dict[str, list[FaceRecord]]) -> None:
    """Raises DatasetError when a group (a person, a photo) is in both train and val."""
    train_groups = {record.group: (where, record) for where, records in train.items() for record in records}
    for where, records in val.items():
        for record in records:
            if record.group in train_groups:
                train_where, train_record = train_groups[record.group]
                raise DatasetError(
                    f"group {record.group!r} is in the training split of {train_where} "
                    f"({train_record.path}) and in the validation split of {where}: a train/val leak",
                    record.path)


def read_groups(path: str | Path) -> set[str]:
    """The groups listed in a text file, one per line; blank lines and ``#`` comments are skipped.

    Raises:
        DatasetError: If the file cannot be read, naming it.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DatasetError(f"cannot read the held-out groups: {error.strerror}", path) from error
    return {line.split("#", 1)[0].strip() for line in lines} - {""}


def _split(records: list[FaceRecord], split: str, holdout: set[str]) -> tuple[list[FaceRecord], list[FaceRecord]]:
    """A source's training and validation records, held-out groups never in training."""
    if split == "holdout":
        records = [replace(r, split="val" if r.group in holdout else "train") for r in records if r.split != "test"]
    return ([r for r in records if r.split == "train" and r.group not in holdout],
            [r for r in records if r.split == "val"])


def _positive_rate(records: Sequence[FaceRecord], sample_weights: np.ndarray) -> np.ndarray:
    """Weighted share of positives among known labels per attribute (0.5 where none known)."""
    labels, mask = labels_matrix(records)
    known = sample_weights @ mask
    rate = np.full(NUM_ATTRIBUTES, 0.5)
    np.divide(sample_weights @ labels, known, out=rate, where=known > 0)
    return rate.astype(np.float32)


def evenly_spread(dataset: Dataset, limit: int) -> Dataset:
    """At most ``limit`` items of ``dataset``, spread evenly over it (and so over its sources)."""
    size = len(dataset)
    if limit <= 0 or size <= limit:
        return dataset
    return Subset(dataset, (np.arange(limit) * size // limit).tolist())


def build_data(config: DataConfig) -> DataBundle:
    """Reads every configured source and builds the training and validation datasets.

    Args:
        config: The ``data`` section; each source brings its own crop and weight.

    Returns:
        The datasets and their label statistics.

    Raises:
        ConfigError: If there are no sources, a weight is negative, a weighted source has
            no training images, or there are no training images at all (``data.sources``).
        DatasetError: If a group (a person, a photo) is in both a training and a validation
            split (a leak), naming the group, the sources and an image; or a reader fails.

    >>> build_data(DataConfig(sources=[]))
    Traceback (most recent call last):
    ...
    faceattr.errors.ConfigError: data.sources: no datasets configured; list at least one source
    """
    if not config.sources:
        raise ConfigError("data.sources: no datasets configured; list at least one source")
    holdout = read_groups(config.holdout_groups) if config.holdout_groups else set()
    train: dict[str, list[FaceRecord]] = {}
    val: dict[str, list[FaceRecord]] = {}
    names, summaries = [], []
    for i, source in enumerate(config.sources):
        if source.weight < 0:
            raise ConfigError(f"data.sources[{i}].weight: must be 0 or more, got {source.weight}")
        result = read_source(source, on_bad_row=config.on_bad_sample)
        summary = result.summary()
        logger.info("%s", summary)
        where = f"data.sources[{i}] ({result.source})"
        train[where], val[where] = _split(result.records, source.split, holdout)
        tests = sum(record.split == "test" for record in result.records)
        if tests:
            logger.info("%s: %d test-split images left out (kept for independent evaluation)", where, tests)
        left_out = len(result.records) - tests - len(train[where]) - len(val[where])
        if left_out:
            logger.info("%s: %d training images of held-out groups left out", where, left_out)
        if source.weight > 0 and not train[where]:
            raise ConfigError(f"{where}: no training images in {source.root} ({summary}); "
                              f"set its weight to 0 to use it for validation only")
        names.append(result.source)
        summaries.append(summary)
    sizes = [len(records) for records in train.values()]
    weights = [source.weight for source in config.sources]
    if sum(size for size, weight in zip(sizes, weights) if weight > 0) == 0:
        raise ConfigError("data.sources: no training images in any weighted source")
    _check_leaks(train, val)

    # Each record's chance of being drawn per sample, so the rates match what the loss sees.
    shares = np.asarray(weights) / sum(weights)
    sample_weights = np.concatenate([np.full(size, share / max(size, 1)) for size, share in zip(sizes, shares)])
    all_train = [record for records in train.values() for record in records]
    # Preloaded images are augmented in batches on the device (faceattr.data.preload).
    train_sets = [FaceDataset(records, eval_transform(config.image_size, source.crop) if config.preload else
                              train_transform(config.image_size, source.crop, config.augment, config.random_erasing),
                              config.on_bad_sample)
                  for records, source in zip(train.values(), config.sources)]
    val_sets = [FaceDataset(records, eval_transform(config.image_size, source.crop), config.on_bad_sample)
                for records, source in zip(val.values(), config.sources)]
    val_set = evenly_spread(ConcatDataset(val_sets), config.max_val_samples)
    if len(val_set) == 0:
        logger.warning("data.sources: no validation images in any source")
    logger.info("data: %d training images (%s), %d validation images", len(all_train),
                ", ".join(f"{name} {size} x{weight:g}" for name, size, weight in zip(names, sizes, weights)),
                len(val_set))
    return DataBundle(train=ConcatDataset(train_sets), val=val_set, train_sizes=sizes, source_names=names,
                      source_weights=weights, positive_rate=_positive_rate(all_train, sample_weights),
                      summaries=summaries)


class MixingSampler(Sampler[int]):
    """Each epoch, draws a weighted mix of sources as indices into their concatenation.

    Source ``s`` gets ``weights[s] / sum(weights)`` of the samples. Within a source, images
    come in seeded random permutations: a source smaller than its share is cycled through
    whole (every image once before any repeats), a larger one gives distinct images, and
    successive epochs continue through its permutation so all its images get their turn.
    The list is shuffled and depends only on ``(seed, epoch)``. With several processes, each
    rank takes every ``world_size``-th item of the same list, so ranks are disjoint and
    together give the single-process list.

    Args:
        sizes: Images per source, in the concatenation's order.
        weights: Share weights (0 or more, not all 0); a source with weight > 0 needs images.
        num_samples: Samples per epoch, over all ranks; rounded up to a multiple of
            ``world_size``.
        seed: Non-negative run seed.
        rank: This process's rank.
        world_size: Number of processes.

    Raises:
        ConfigError: On inconsistent sizes, weights, counts or ranks.

    >>> sampler = MixingSampler([3, 100], [1.0, 1.0], num_samples=6, seed=0)
    >>> sorted(i for i in sampler if i < 3)
    [0, 1, 2]
    >>> len(sampler)
    6
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], num_samples: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if len(sizes) != len(weights) or not sizes:
            raise ConfigError(f"data.sources: {len(sizes)} source sizes but {len(weights)} weights")
        if min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError(f"data.sources weights: must be 0 or more and not all 0, got {list(weights)}")
        empty = [s for s, (size, weight) in enumerate(zip(sizes, weights)) if weight > 0 and size <= 0]
        if empty:
            raise ConfigError(f"data.sources[{empty[0]}]: weight {weights[empty[0]]} but no images to draw")
        if num_samples <= 0:
            raise ConfigError(f"data.epoch_size: samples per epoch must be positive, got {num_samples}")
        if seed < 0:
            raise ConfigError(f"train.seed: must be 0 or more, got {seed}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside 0..{world_size - 1}")
        self.sizes = [int(size) for size in sizes]
        self.weights = [float(weight) for weight in weights]
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.total = math.ceil(num_samples / world_size) * world_size
        self.counts = _shares(self.weights, self.total)
        self.offsets = np.cumsum([0, *self.sizes[:-1]]).tolist()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose list the next iteration yields."""
        self.epoch = epoch

    def _source_indices(self, source: int, epoch: int) -> np.ndarray:
        """The epoch's ``counts[source]`` images of one source, as positions in that source."""
        size, count = self.sizes[source], self.counts[source]
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        # Epoch windows on the endless stream of permutations never straddle two of them
        # unless the share exceeds the source: images are distinct within an epoch when
        # they can be, and cycled whole when they cannot.
        if count <= size:
            epochs_per_permutation = size // count
            start = (epoch // epochs_per_permutation) * size + (epoch % epochs_per_permutation) * count
        else:
            start = epoch * math.ceil(count / size) * size
        first, last = start // size, (start + count - 1) // size
        stream = np.concatenate([np.random.default_rng([self.seed, _PERMUTATION, source, cycle]).permutation(size)
                                 for cycle in range(first, last + 1)])
        offset = start - first * size
        return stream[offset: offset + count]

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """The whole epoch's list over all ranks: ``total`` indices into the concatenation."""
        drawn = np.concatenate([self.offsets[s] + self._source_indices(s, epoch) for s in range(len(self.sizes))])
        return drawn[np.random.default_rng([self.seed, _SHUFFLE, epoch]).permutation(len(drawn))]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices(self.epoch)[self.rank:: self.world_size].tolist())

    def __len__(self) -> int:
        return self.total // self.world_size


class _SeededSampler(Sampler[tuple[int, int]]):
    """Pairs each index of a :class:`MixingSampler` with its sample's augmentation seed.

    Workers do not reseed between epochs when they persist, so the seed travels with the
    index instead, drawn from ``(seed, epoch, position in the epoch's list)``.
    """

    def __init__(self, sampler: MixingSampler):
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose list the next iteration yields."""
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        mixing = self.sampler
        rng = np.random.default_rng([mixing.seed, _AUGMENTATION, mixing.epoch])
        seeds = rng.integers(0, 2**63 - 1, size=mixing.total)[mixing.rank:: mixing.world_size]
        return zip(iter(mixing), seeds.tolist())

    def __len__(self) -> int:
        return len(self.sampler)


class _SeededDataset(Dataset):
    """Fetches ``dataset[index]`` for an ``(index, seed)`` key with torch's RNG seeded by ``seed``.

    The caller's RNG state is restored afterwards, so the model's own randomness (dropout)
    is unaffected when loading runs in the main process.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


def build_loaders(bundle: DataBundle, config: DataConfig, seed: int, rank: int = 0, world_size: int = 1,
                  device: torch.device | None = None) -> tuple[DataLoader | PreloadedLoader, DataLoader | PreloadedLoader]:
    """The training and validation loaders of one process.

    Training draws ``config.epoch_size`` samples per epoch (0: all training images) with a
    :class:`MixingSampler`, in full batches; call ``train_loader.sampler.set_epoch(epoch)``
    before each epoch. Validation gives this rank a contiguous shard of ``bundle.val``,
    unshuffled and unpadded: ``val_loader.dataset.indices`` are its positions in
    ``bundle.val``, so gathering the ranks' results in rank order restores the full order.
    Both drop unreadable samples (``on_bad_sample: skip``) and yield ``None`` for a batch
    with none left. With ``config.preload`` they are :class:`PreloadedLoader` objects with the
    same order of samples, keeping images and batches on ``device``.

    Args:
        bundle: From :func:`build_data`.
        config: The ``data`` section (batch size, workers, epoch size).
        seed: The run seed; with the epoch it fixes the sample order and augmentation.
        rank: This process's rank.
        world_size: Number of processes.
        device: Where preloaded images are kept (default: the CPU); unused without preload.

    Returns:
        ``(train_loader, val_loader)``.

    Raises:
        ConfigError: If an epoch holds less than one full batch per process.
    """
    sampler = MixingSampler(bundle.train_sizes, bundle.source_weights,
                            config.epoch_size or sum(bundle.train_sizes), seed, rank, world_size)
    if len(sampler) < config.batch_size:
        raise ConfigError(f"data.batch_size: {config.batch_size} is more than the {len(sampler)} training "
                          f"samples per epoch and process; lower it or raise data.epoch_size")
    size = len(bundle.val)
    shard = Subset(bundle.val, range(size * rank // world_size, size * (rank + 1) // world_size))
    if config.preload:
        device = device or torch.device("cpu")
        return (PreloadedLoader(bundle.train.datasets, config.batch_size, device, config.workers, sampler,
                                config.augment, seed, config.random_erasing),
                PreloadedLoader([shard], config.batch_size, device, config.workers))
    # Their own generator keeps the loaders off the global RNG, whose stream (dropout) would
    # otherwise depend on when the persistent workers were started: at epoch 0, or at a resume.
    common = {"generator": torch.Generator().manual_seed(seed), "batch_size": config.batch_size,
              "num_workers": config.workers,
              "persistent_workers": config.workers > 0, "pin_memory": torch.cuda.is_available(),
              "collate_fn": collate_skipping_none}
    train_loader = DataLoader(_SeededDataset(bundle.train), sampler=_SeededSampler(sampler), drop_last=True,
                              **common)
    val_loader = DataLoader(shard, shuffle=False, drop_last=False, **common)
    return train_loader, val_loader
