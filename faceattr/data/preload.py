"""Images decoded once and kept on the training device, batched and augmented there.

With ``data.preload: true`` the loaders of :func:`faceattr.data.loader.build_loaders` are
:class:`PreloadedLoader` objects instead of DataLoaders. On a GPU with 64 px faces the CPU
cannot decode and augment images as fast as the network consumes them (about 1,500 images/s
per core against tens of thousands); holding the evaluation crops in GPU memory (12 KB a
face at 64 px: 0.5 GB for CelebA-sized data) and augmenting whole batches there with
:func:`faceattr.data.transforms.augment_batch` removes the CPU from the loop. The sample order
is the same :class:`~faceattr.data.loader.MixingSampler`'s, and augmentation is seeded by
``(seed, epoch)``, so a resumed run repeats what an uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from faceattr.data.dataset import collate_skipping_none
from faceattr.data.transforms import augment_batch

logger = logging.getLogger(__name__)

#: Images per decoding batch while preloading.
PRELOAD_BATCH = 256


def preload(dataset: Dataset, device: torch.device, workers: int) -> dict[str, torch.Tensor]:
    """Every sample of ``dataset`` (evaluation transform), stacked on ``device``.

    Args:
        dataset: Yields sample dicts (see :mod:`faceattr.data.dataset`); unreadable images
            in ``on_bad_sample: skip`` mode are left out.
        device: Where the tensors go.
        workers: DataLoader processes decoding the images.

    Returns:
        The batch dict of the whole dataset: ``image`` uint8 ``(N, 3, S, S)`` and the labels.
    """
    # Its own generator: drawing the workers' seed from the global one would make the model's
    # randomness (dropout) depend on when the preload ran, at the start or at a resume.
    loader = DataLoader(dataset, batch_size=PRELOAD_BATCH, num_workers=workers, collate_fn=collate_skipping_none,
                        generator=torch.Generator())
    parts = [batch for batch in loader if batch is not None]
    if not parts:
        return {}
    return {key: torch.cat([part[key] for part in parts]).to(device) for key in parts[0]}


class PreloadedLoader:
    """Batches of preloaded samples: the training mix, augmented, or validation in order.

    Images are decoded on the first iteration, so building loaders that are never iterated
    (the training loader of an evaluation) costs nothing.

    Args:
        datasets: One dataset per source, with the evaluation transform.
        batch_size: Samples per batch.
        device: Where images are kept and batches are made.
        workers: Decoding processes for the one-off preload.
        sampler: For training: draws the epoch's samples (a
            :class:`~faceattr.data.loader.MixingSampler` over ``datasets``); batches are full
            and augmented. ``None`` for validation: every sample once, in order, unaugmented.
        augment: Apply :func:`faceattr.data.transforms.augment_batch` to training batches.
        seed: With the epoch, seeds the augmentation.
        random_erasing: With ``augment``, each training image's chance of random erasing.
    """

    def __init__(self, datasets: Sequence[Dataset], batch_size: int, device: torch.device, workers: int = 0,
                 sampler=None, augment: bool = True, seed: int = 0, random_erasing: float = 0.0):
        self.datasets = list(datasets)
        self.batch_size = batch_size
        self.device = device
        self.workers = workers
        self.sampler = sampler
        self.augment = augment
        self.seed = seed
        self.random_erasing = random_erasing
        self._data: dict[str, torch.Tensor] | None = None

    def _load(self) -> dict[str, torch.Tensor]:
        if self._data is None:
            parts = [preload(dataset, self.device, self.workers) for dataset in self.datasets]
            sizes = [len(part.get("image", ())) for part in parts]
            if self.sampler is not None and sizes != self.sampler.sizes:
                # Unreadable images were skipped: draw from the images that are there.
                old = self.sampler
                self.sampler = type(old)(sizes, old.weights, old.total, old.seed, old.rank, old.world_size)
                self.sampler.set_epoch(old.epoch)
            kept = [part for part in parts if part]
            self._data = {key: torch.cat([part[key] for part in kept]) for key in kept[0]} if kept else {}
            logger.info("preloaded %d images on %s (%.0f MB)", sum(sizes), self.device,
                        sum(t.numel() * t.element_size() for t in self._data.values()) / 2**20)
        return self._data

    def __len__(self) -> int:
        if self.sampler is not None:
            return len(self.sampler) // self.batch_size
        return math.ceil(sum(len(dataset) for dataset in self.datasets) / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        data = self._load()
        if not data:
            return
        if self.sampler is None:
            order = torch.arange(len(data["image"]), device=self.device)
            starts = range(0, len(order), self.batch_size)
        else:
            epoch = self.sampler.epoch
            order = torch.as_tensor(np.fromiter(self.sampler, dtype=np.int64), device=self.device)
            starts = range(0, len(order) - self.batch_size + 1, self.batch_size)
            generator = torch.Generator(device=self.device).manual_seed(
                int(np.random.default_rng([self.seed, epoch]).integers(2**62)))
        for start in starts:
            index = order[start: start + self.batch_size]
            batch = {key: value[index] for key, value in data.items()}
            if self.sampler is not None and self.augment:
                batch["image"] = augment_batch(batch["image"], generator, self.random_erasing)
            yield batch
