"""The torch Dataset of face records: image decoding, transforms and the sample dict.

Each sample is a dict: ``image`` uint8 ``(3, H, W)`` RGB (the network normalises it); ``attributes`` float32
``(40,)`` of 0/1 (0 where unknown); ``attribute_mask`` bool ``(40,)``; ``beauty`` float32
scalar (0 where unknown); ``beauty_mask`` bool scalar. The default collate makes a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset, Subset, default_collate

from faceattr.attributes import NUM_ATTRIBUTES
from faceattr.config import BAD_SAMPLE_CHOICES
from faceattr.data.records import FaceRecord
from faceattr.errors import ConfigError, ImageError
from faceattr.image import load_image

logger = logging.getLogger(__name__)


class FaceDataset(Dataset):
    """Face records as training samples (see the module docstring for the sample dict).

    Args:
        records: The faces, from one or several readers.
        transform: RGB PIL image -> uint8 ``(3, H, W)`` tensor, e.g.
            :func:`faceattr.data.transforms.eval_transform`.
        on_bad_sample: ``"error"`` raises :class:`~faceattr.errors.ImageError` on an image
            that cannot be read; ``"skip"`` logs a warning naming the file and returns
            ``None`` for it, which :func:`collate_skipping_none` drops.

    Raises:
        ConfigError: If ``on_bad_sample`` is not ``"error"`` or ``"skip"``.

    >>> from faceattr.data.transforms import eval_transform
    >>> dataset = FaceDataset([], eval_transform(64, None))
    >>> len(dataset)
    0
    """

    def __init__(self, records: Sequence[FaceRecord], transform: Callable[[Image.Image], torch.Tensor],
                 on_bad_sample: str = "error"):
        if on_bad_sample not in BAD_SAMPLE_CHOICES:
            raise ConfigError(f"data.on_bad_sample: {on_bad_sample!r} is not one of "
                              f"{', '.join(BAD_SAMPLE_CHOICES)}")
        self.records = list(records)
        self.transform = transform
        self.on_bad_sample = on_bad_sample

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | None:
        record = self.records[index]
        try:
            image = load_image(record.path)
        except ImageError as error:
            if self.on_bad_sample == "error":
                raise
            logger.warning("skipping %s: %s", record.path, error)
            return None
        return {"image": self.transform(image), **_label_tensors(record)}


def _label_tensors(record: FaceRecord) -> dict[str, torch.Tensor]:
    """The label part of a sample: ``attributes``, ``attribute_mask``, ``beauty``, ``beauty_mask``.

    >>> from pathlib import Path
    >>> labels = _label_tensors(FaceRecord(Path("a.jpg"), "train", "g", "scut", beauty=3.5))
    >>> labels["beauty"].item(), labels["beauty_mask"].item(), labels["attribute_mask"].any().item()
    (3.5, True, False)
    """
    if record.attributes is None:
        attributes = np.zeros(NUM_ATTRIBUTES, np.float32)
        mask = np.zeros(NUM_ATTRIBUTES, bool)
    else:
        mask = np.asarray(record.attribute_mask, dtype=bool)
        attributes = np.where(mask, record.attributes, 0.0).astype(np.float32)
    return {
        "attributes": torch.from_numpy(attributes),
        "attribute_mask": torch.from_numpy(mask.copy()),
        "beauty": torch.tensor(0.0 if record.beauty is None else record.beauty, dtype=torch.float32),
        "beauty_mask": torch.tensor(record.beauty is not None),
    }


def collate_skipping_none(samples: Sequence[dict[str, torch.Tensor] | None]) -> dict[str, Any] | None:
    """Drops the ``None`` samples of unreadable images, then collates the rest.

    Args:
        samples: Sample dicts, some of them ``None`` (``on_bad_sample="skip"``).

    Returns:
        The batch dict, or ``None`` when every sample was ``None`` (the engine skips it).

    >>> collate_skipping_none([None, {"x": torch.ones(2)}])["x"].shape
    torch.Size([1, 2])
    >>> collate_skipping_none([None]) is None
    True
    """
    kept = [sample for sample in samples if sample is not None]
    return default_collate(kept) if kept else None


def labels_matrix(records: Sequence[FaceRecord]) -> tuple[np.ndarray, np.ndarray]:
    """All records' attribute labels and masks, stacked, for label statistics.

    Args:
        records: Face records; those without attributes give a row of zeros and
            a mask row of False.

    Returns:
        ``(labels, mask)``: float32 ``(N, 40)`` of 0/1 (0 where unknown) and bool ``(N, 40)``.

    >>> from pathlib import Path
    >>> labels, mask = labels_matrix([FaceRecord(Path("a.jpg"), "train", "g", "scut", beauty=3.0)])
    >>> labels.shape, bool(mask.any())
    ((1, 40), False)
    """
    labels = np.zeros((len(records), NUM_ATTRIBUTES), np.float32)
    mask = np.zeros((len(records), NUM_ATTRIBUTES), bool)
    for row, record in enumerate(records):
        if record.attributes is not None:
            mask[row] = record.attribute_mask
            labels[row] = np.where(record.attribute_mask, record.attributes, 0.0)
    return labels, mask


def dataset_records(dataset: Dataset) -> list[FaceRecord]:
    """The records behind each item of a :class:`FaceDataset`, or of subsets and concatenations of them.

    Which image each row of a validation set is: item ``i`` of ``dataset`` is the image of
    ``dataset_records(dataset)[i]``.

    Args:
        dataset: A :class:`FaceDataset`, a :class:`~torch.utils.data.Subset` or a
            :class:`~torch.utils.data.ConcatDataset` of them (nested as deep as needed).

    Returns:
        The records, in item order.

    Raises:
        TypeError: A dataset of another kind, which holds no records.

    >>> from pathlib import Path
    >>> from torch.utils.data import ConcatDataset, Subset
    >>> from faceattr.data.transforms import eval_transform
    >>> faces = FaceDataset([FaceRecord(Path(f"{i}.jpg"), "val", str(i), "scut", beauty=3.0) for i in range(3)],
    ...                     eval_transform(64, None))
    >>> [record.path.name for record in dataset_records(ConcatDataset([Subset(faces, [2, 0]), faces]))]
    ['2.jpg', '0.jpg', '0.jpg', '1.jpg', '2.jpg']
    """
    if isinstance(dataset, FaceDataset):
        return list(dataset.records)
    if isinstance(dataset, Subset):
        inner = dataset_records(dataset.dataset)
        return [inner[index] for index in dataset.indices]
    if isinstance(dataset, ConcatDataset):
        return [record for part in dataset.datasets for record in dataset_records(part)]
    raise TypeError(f"{type(dataset).__name__} holds no face records (expected FaceDataset, Subset or ConcatDataset)")
