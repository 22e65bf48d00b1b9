"""Packing a config's training data into small CSV sources: every face cut and resized once.

Reads the ``data`` section as training does (:func:`faceattr.data.loader.build_data`: every
source, the holdout and split logic, the leak check) and writes, per source, ``OUT/NAME.csv``
and ``OUT/NAME/`` holding each training and validation image after the source's evaluation
crop and resize to ``data.image_size`` (no jitter), as WebP, JPEG or lossless PNG. Test-split
images and the training images of held-out groups are left out. The rows of a scut source (or
of a CSV with a fold column) hold their cross-validation fold instead of a split.
``OUT/sources.yaml`` lists the packed sources, to use as ``data.sources``; ``OUT/pack.json``
records the settings the images were made with, so that a rerun only adds missing images and
a folder packed otherwise is refused. tools/pack_dataset.py is the command (its help tells
how to train on a pack).

>>> source_name(1, SourceConfig(kind="scut", root="../data/SCUT-FBP5500_v2"))
's1_scut_SCUT-FBP5500_v2'
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from faceattr.attributes import ATTRIBUTES
from faceattr.config import DataConfig, SourceConfig
from faceattr.data.loader import build_data
from faceattr.data.records import FaceRecord
from faceattr.data.sources import read_source
from faceattr.data.transforms import CropResize
from faceattr.errors import ConfigError, DatasetError, ImageError
from faceattr.files import open_exclusive, write_exclusive
from faceattr.image import load_image
from faceattr.runtime import spawn_pool

logger = logging.getLogger(__name__)

#: Each format's file extension, PIL format name and whether ``quality`` applies.
FORMATS: dict[str, tuple[str, str, bool]] = {
    "webp": (".webp", "WEBP", True),
    "jpeg": (".jpg", "JPEG", True),
    "png": (".png", "PNG", False),
}
#: Kinds whose splits may come from cross-validation folds (a CSV's from its fold column).
FOLDED_KINDS = ("scut", "csv")
SETTINGS_FILE = "pack.json"
SOURCES_FILE = "sources.yaml"
_PROGRESS_EVERY_S = 30.0


@dataclasses.dataclass
class PackedSource:
    """One source of the pack: its name, configuration and rows.

    Attributes:
        name: File and folder name in OUT, e.g. ``s0_celeba_img_align_celeba``.
        source: The original source's configuration.
        records: Its training and validation records, in the order training reads them.
        images: Each record's image file, relative to OUT.
        folds: Each record's cross-validation fold, or ``None`` where its split is its own.
    """

    name: str
    source: SourceConfig
    records: list[FaceRecord]
    images: list[str]
    folds: list[int | None]


@dataclasses.dataclass
class SourceSummary:
    """What packing did for one source: rows in its CSV, images written, kept, skipped, and bytes."""

    name: str
    rows: int = 0
    written: int = 0
    kept: int = 0
    unreadable: int = 0
    bytes: int = 0


def source_name(index: int, source: SourceConfig) -> str:
    """A short unique tag for the ``index``-th source: index, kind and its folder (or CSV) name.

    >>> source_name(0, SourceConfig(kind="celeba", root="../data/celeba", images="img_align_celeba"))
    's0_celeba_img_align_celeba'
    >>> source_name(3, SourceConfig(kind="csv", root="teams/our team.csv"))
    's3_csv_our_team'
    """
    where = Path(source.images or source.root)
    tag = where.stem if source.kind == "csv" and not source.images else where.name
    return f"s{index}_{source.kind}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', tag)}"


def relative_images(paths: list[Path], extension: str) -> list[str]:
    """Each image's path below the folder common to all of them, with the format's extension.

    Raises:
        DatasetError: If two images would get the same name (``a.jpg`` and ``a.png``).

    >>> relative_images([Path("/d/img/1.jpg"), Path("/d/img/x/2.png")], ".webp")
    ['1.webp', 'x/2.webp']
    """
    absolute = [Path(os.path.abspath(path)) for path in paths]
    if not absolute:
        return []
    common = Path(os.path.commonpath([path.parent for path in absolute]))
    names = [path.relative_to(common).with_suffix(extension).as_posix() for path in absolute]
    first: dict[str, Path] = {}
    for name, path in zip(names, absolute):
        if first.setdefault(name, path) != path:
            raise DatasetError(f"{first[name]} and this image would both be packed as {name}", path)
    return names


def fold_assignment(source: SourceConfig, on_bad_row: str) -> tuple[dict[Path, int], dict[Path, int]]:
    """The fold of each image whose split the fold decides, and each image's position in a read.

    The source is read once per fold; an image that the read with ``fold=k`` alone makes
    ``val`` is in fold ``k``. Images that are ``val`` in every read or in none (a CSV's own
    split cells, SCUT images outside the official fold files) keep their split.
    """
    val_in: dict[Path, list[int]] = {}
    order: dict[Path, int] = {}
    for k in range(source.folds):
        records = read_source(dataclasses.replace(source, fold=k), on_bad_row).records
        order = order or {record.path: position for position, record in enumerate(records)}
        for record in records:
            if record.split == "val":
                val_in.setdefault(record.path, []).append(k)
    return {path: folds[0] for path, folds in val_in.items() if len(folds) == 1}, order


def plan_sources(config: DataConfig, extension: str) -> list[PackedSource]:
    """Every source's training and validation records, as :func:`build_data` reads them.

    Validation is not capped (``max_val_samples``): the packed sources keep every validation
    record in its order, so the same cap spreads over the same images. The records of a
    ``scut`` or ``csv`` source (official split) are in read order, with their folds (see
    :func:`fold_assignment`), so that every fold of the packed source reads as that fold of
    the original. An image of a held-out group keeps its fold: in other folds it trains,
    where the original leaves it out (held-out groups are people of in-the-wild photos).

    Raises:
        ConfigError, DatasetError: As :func:`build_data` does (bad sources, leaks).
    """
    bundle = build_data(dataclasses.replace(config, max_val_samples=0))
    packed = []
    for index, (source, train, val) in enumerate(zip(config.sources, bundle.train.datasets, bundle.val.datasets)):
        records = [*train.records, *val.records]
        folds: list[int | None] = [None] * len(records)
        if source.kind in FOLDED_KINDS and source.split == "official":
            fold_of, order = fold_assignment(source, config.on_bad_sample)
            records.sort(key=lambda record: order[record.path])
            folds = [fold_of.get(record.path) for record in records]
        name = source_name(index, source)
        images = [f"{name}/{image}" for image in relative_images([record.path for record in records], extension)]
        packed.append(PackedSource(name, source, records, images, folds))
    return packed


def pack_settings(config: DataConfig, image_format: str, quality: int) -> dict:
    """What the packed images depend on: a folder packed with other settings has other images."""
    return {"format": image_format, "quality": quality if FORMATS[image_format][2] else None,
            "image_size": config.image_size,
            "sources": {source_name(i, source): {"root": source.root, "images": source.images, "crop": source.crop}
                        for i, source in enumerate(config.sources)}}


def check_out(out: Path, settings: dict, overwrite: bool) -> None:
    """Refuses an OUT that is a file, a pack made with other settings, or a non-empty folder that is no pack.

    Raises:
        DatasetError: Naming the folder or its settings file and what differs.
    """
    marker = out / SETTINGS_FILE
    if out.exists() and not out.is_dir():
        raise DatasetError("not a folder: the pack needs a folder", out)
    if marker.is_file():
        try:
            stored = json.loads(marker.read_text())["settings"]
            changed = [key for key in settings if stored.get(key) != settings[key]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise DatasetError(f"not a pack settings file ({error!r}); remove it or choose another folder",
                               marker) from None
        if changed and not overwrite:
            raise DatasetError(f"packed with other settings ({', '.join(changed)}): pass --overwrite to "
                               "re-encode every image, or choose another folder", marker)
    elif out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DatasetError(f"the folder holds files but no {SETTINGS_FILE}, so it is no pack: choose a new or "
                           "empty folder (or pass --overwrite to pack into it anyway)", out)


def encode_face(path: Path, target: Path, crop: list[float] | None, image_size: int, image_format: str,
                quality: int) -> int:
    """Writes the evaluation crop of one image at ``target``, atomically; returns its size in bytes.

    Raises:
        ImageError: If the image cannot be read.
    """
    image = CropResize(image_size, crop)(load_image(path))
    _, pil_format, lossy = FORMATS[image_format]
    target.parent.mkdir(parents=True, exist_ok=True)
    # Whole or not at all (a killed run leaves no truncated image), never through a planted link.
    write_exclusive(target, lambda file: image.save(file, format=pil_format,
                                                    **({"quality": quality} if lossy else {"optimize": True})))
    return target.stat().st_size


def _encode_job(job: tuple[int, int, Path, Path, list[float] | None], image_size: int, image_format: str,
                quality: int) -> tuple[int, int, int, str | None]:
    """Runs :func:`encode_face` for ``(source, row, path, target, crop)``; returns the indices, bytes and error."""
    source, row, path, target, crop = job
    try:
        return source, row, encode_face(path, target, crop, image_size, image_format, quality), None
    except ImageError as error:
        return source, row, 0, str(error)


def _run_jobs(jobs: list, task: functools.partial, workers: int) -> Iterator[tuple[int, int, int, str | None]]:
    """The results of ``task`` over ``jobs``, in any order, from this process or a pool."""
    if workers == 1 or len(jobs) <= 1:
        yield from map(task, jobs)
        return
    with spawn_pool(min(workers, len(jobs))) as pool:
        yield from pool.imap_unordered(task, jobs, chunksize=32)


def write_csv(packed: PackedSource, path: Path) -> None:
    """Writes one packed source's CSV (see :data:`faceattr.data.readers.csvfile.LAYOUT`), atomically."""
    beauty = any(record.beauty is not None for record in packed.records)
    attributes = any(record.attributes is not None for record in packed.records)
    folds = any(fold is not None for fold in packed.folds)
    header = ["image", "split", "group", *(["beauty"] if beauty else []), *(ATTRIBUTES if attributes else []),
              *(["fold"] if folds else [])]
    with open_exclusive(path) as binary:
        file = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(header)
        for record, image, fold in zip(packed.records, packed.images, packed.folds):
            row = [image, record.split if fold is None else "", record.group]
            if beauty:
                row.append("" if record.beauty is None else repr(record.beauty))  # repr: the exact float
            if attributes:
                known = record.attribute_mask if record.attributes is not None else [False] * len(ATTRIBUTES)
                row += [str(int(record.attributes[i])) if known[i] else "" for i in range(len(ATTRIBUTES))]
            if folds:
                row.append("" if fold is None else str(fold))
            writer.writerow(row)
        file.detach()  # flushed into the binary file, which open_exclusive puts in place


def write_sources(packed: list[PackedSource], out: Path, command: str, settings: dict) -> Path:
    """Writes OUT/sources.yaml: one csv source per packed source, to use as ``data.sources``."""
    size = settings["image_size"]
    lines = [f"# Packed by: {command or 'faceattr.data.pack'}",
             f"# {size} px {settings['format']} images, already cut (crop: null): use with data.image_size: {size}",
             "# and without data.holdout_groups (already applied). Paste as data.sources; see tools/pack_dataset.py.",
             "sources:"]
    for item in packed:
        entry = {"kind": "csv", "root": (out / f"{item.name}.csv").as_posix(), "weight": item.source.weight,
                 "crop": None}
        if any(fold is not None for fold in item.folds):
            entry |= {"folds": item.source.folds, "fold": item.source.fold}
        lines.append("  - " + yaml.safe_dump(entry, default_flow_style=True, sort_keys=False, width=10**6).strip())
    path = out / SOURCES_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


def pack(config: DataConfig, out: str | Path, image_format: str = "webp", quality: int = 85, workers: int = 2,
         overwrite: bool = False, command: str = "") -> list[SourceSummary]:
    """Packs the sources of ``config`` into ``out`` (see the module docstring and tools/pack_dataset.py).

    Args:
        config: The ``data`` section, as training reads it.
        out: The pack folder; ``sources.yaml`` names the CSVs by this path as given.
        image_format: ``webp``, ``jpeg`` or ``png`` (lossless).
        quality: 1-100, for webp and jpeg.
        workers: Processes encoding in parallel (1: this process).
        overwrite: Re-encode the images already there; pack into a folder made otherwise.
        command: The command line, recorded in ``pack.json`` and ``sources.yaml``.

    Returns:
        One summary per source.

    Raises:
        ConfigError: On a bad format, quality or workers count, or a bad source.
        DatasetError: On a refused folder (see :func:`check_out`) or a dataset error.
        ImageError: On an unreadable image, unless ``data.on_bad_sample`` is ``skip``
            (the record is then left out of the CSV and counted).
    """
    if image_format not in FORMATS:
        raise ConfigError(f"--format: {image_format!r} is not one of {', '.join(FORMATS)}")
    if not 1 <= quality <= 100:
        raise ConfigError(f"--quality: {quality} is outside 1-100")
    if workers < 1:
        raise ConfigError(f"--workers: {workers} must be at least 1")
    out = Path(out)
    settings = pack_settings(config, image_format, quality)
    check_out(out, settings, overwrite)
    packed = plan_sources(config, FORMATS[image_format][0])
    out.mkdir(parents=True, exist_ok=True)
    (out / SETTINGS_FILE).write_text(json.dumps({"command": command, "settings": settings}, indent=2) + "\n")

    summaries = [SourceSummary(item.name, rows=len(item.records)) for item in packed]
    jobs = []
    for s, item in enumerate(packed):
        for row, (record, image) in enumerate(zip(item.records, item.images)):
            target = out / image
            if not overwrite and target.is_file():
                summaries[s].kept += 1
                summaries[s].bytes += target.stat().st_size
            else:
                jobs.append((s, row, record.path, target, item.source.crop))
    logger.info("%d images to encode, %d already there, with %d worker(s)", len(jobs),
                sum(summary.kept for summary in summaries), workers)
    task = functools.partial(_encode_job, image_size=config.image_size, image_format=image_format, quality=quality)
    unreadable: list[set[int]] = [set() for _ in packed]
    started = last_log = time.monotonic()
    for done, (s, row, size, error) in enumerate(_run_jobs(jobs, task, workers), 1):
        if error is not None:
            if config.on_bad_sample == "error":
                raise ImageError(f"{error} (set data.on_bad_sample=skip to leave such images out)")
            logger.warning("left out: %s", error)
            unreadable[s].add(row)
            continue
        summaries[s].written += 1
        summaries[s].bytes += size
        if time.monotonic() >= last_log + _PROGRESS_EVERY_S:
            last_log = time.monotonic()
            logger.info("%d of %d images (%.0f images/s)", done, len(jobs), done / (last_log - started))
    for item, summary, left_out in zip(packed, summaries, unreadable):
        if left_out:
            keep = [row for row in range(len(item.records)) if row not in left_out]
            item.records, item.images, item.folds = ([values[row] for row in keep]
                                                     for values in (item.records, item.images, item.folds))
            summary.rows, summary.unreadable = len(keep), len(left_out)
        write_csv(item, out / f"{item.name}.csv")
        summary.bytes += (out / f"{item.name}.csv").stat().st_size
    write_sources(packed, out, command, settings)
    return summaries


def summary_lines(summaries: list[SourceSummary], out: str | Path) -> list[str]:
    """What :func:`pack` did, one line per source and a total, as tools/pack_dataset.py prints it.

    >>> for line in summary_lines([SourceSummary("s0_csv_team", rows=5, written=3, kept=2, bytes=4000)], "packed"):
    ...     print(line)
    s0_csv_team: 5 faces (3 written, 2 already there), 0.00 MB
    total: 5 faces, 3 written, 0.00 MB; sources: packed/sources.yaml
    """
    lines = []
    for summary in summaries:
        skipped = f", {summary.unreadable} unreadable left out" if summary.unreadable else ""
        lines.append(f"{summary.name}: {summary.rows} faces ({summary.written} written, {summary.kept} already there"
                     f"{skipped}), {summary.bytes / 1e6:.2f} MB")
    lines.append(f"total: {sum(s.rows for s in summaries)} faces, {sum(s.written for s in summaries)} written, "
                 f"{sum(s.bytes for s in summaries) / 1e6:.2f} MB; sources: {Path(out) / SOURCES_FILE}")
    return lines
