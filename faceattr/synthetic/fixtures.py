"""Writes generated datasets in each official layout (CelebA, CelebA-HQ, SCUT-FBP5500, team CSV).

The images are faces drawn by :mod:`faceattr.synthetic.drawing`, whose visible features follow
the labels written next to them, so a model trained on a fixture learns something real.
The label files copy the official formats down to line endings and padding. Everything is
deterministic given a seed.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from faceattr.attributes import ATTRIBUTES
from faceattr.data.readers import celeba, celebahq, scut
from faceattr.data.readers.labelfiles import BadRows, read_attribute_file
from faceattr.synthetic.drawing import (
    CELEBA_GEOMETRY,
    HAIR_COLOURS,
    HQ_GEOMETRY,
    SCUT_GEOMETRY,
    draw_face,
    person_image_labels,
    random_beauty,
    random_labels,
)

#: The team CSV fixture's attribute columns.
CSV_ATTRIBUTES = ("Male", "Smiling", "Eyeglasses", "Wearing_Hat", "Blond_Hair", "Black_Hair", "Bangs")


def _write_lines(path: Path, lines: list[str], newline: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline=newline) as file:
        file.write("\n".join(lines) + "\n")


def _attribute_row(name: str, labels: dict[str, bool], width: int) -> str:
    return name + " " + " ".join(f"{1 if labels[attribute] else -1:{width}d}" for attribute in ATTRIBUTES)


def make_celeba(root: str | Path, identities: int = 30, images_per_identity: int = 4,
                size: tuple[int, int] = (178, 218), seed: int = 0, missing_fraction: float = 0.0) -> Path:
    """Writes a CelebA-layout dataset of drawn faces (see :data:`faceattr.data.readers.celeba.LAYOUT`).

    Like the official files: ``list_attr_celeba.txt`` (CRLF, values padded to two
    characters), ``list_eval_partition.txt`` (CRLF; about 80/10/10% of the people in
    train/val/test) and ``identity_CelebA.txt``.

    Args:
        root: Folder to write (created).
        identities: Number of people; each keeps their person attributes and skin tone.
        images_per_identity: Images of each person (smiles, glasses, hats vary).
        size: Image size; other than 178x218 writes ``img_align_celeba_{W}x{H}/``.
        seed: Same seed, same files.
        missing_fraction: Share of label rows whose image is not written.

    Returns:
        ``root``.

    >>> import tempfile
    >>> root = make_celeba(tempfile.mkdtemp(), identities=3, images_per_identity=2)
    >>> len(list((root / "img_align_celeba").iterdir()))
    6
    """
    root, size = Path(root), tuple(size)
    sized_folder = f"{celeba.DEFAULT_IMAGES}_{size[0]}x{size[1]}"
    folder = root / (celeba.DEFAULT_IMAGES if size == CELEBA_GEOMETRY.canvas else sized_folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    people = [(random_labels(rng), float(rng.random())) for _ in range(identities)]
    person_ids = rng.permutation(max(identities, 10177))[:identities] + 1
    held_out = max(1, round(0.1 * identities)) if identities >= 3 else 0
    split_code = {int(person): "1" if rank < held_out else "2" if rank < 2 * held_out else "0"
                  for rank, person in enumerate(rng.permutation(identities))}
    slots = [person for person in range(identities) for _ in range(images_per_identity)]
    attribute_lines, partition_lines, identity_lines = [str(len(slots)), " ".join(ATTRIBUTES) + " "], [], []
    for number, slot in enumerate(rng.permutation(len(slots)), 1):
        person, name = slots[slot], f"{number:06d}.jpg"
        labels = person_image_labels(rng, people[person][0])
        image = draw_face(labels, size, rng, tone=people[person][1])
        if rng.random() >= missing_fraction:
            image.save(folder / name, quality=90)
        attribute_lines.append(_attribute_row(name, labels, width=2))
        partition_lines.append(f"{name} {split_code[person]}")
        identity_lines.append(f"{name} {person_ids[person]}")
    _write_lines(root / celeba.ATTRIBUTE_FILE, attribute_lines, newline="\r\n")
    _write_lines(root / celeba.PARTITION_FILE, partition_lines, newline="\r\n")
    _write_lines(root / celeba.IDENTITY_FILE, identity_lines)
    return root


def make_celebahq(root: str | Path, celeba_root: str | Path, count: int, size: int = 64, seed: int = 0) -> Path:
    """Writes a CelebA-HQ-layout dataset re-drawn from ``count`` images of a CelebA fixture.

    Each HQ image has the labels of a CelebA image of ``celeba_root`` (made by
    :func:`make_celeba`), drawn again in the wider HQ crop; the mapping file points at it.
    Images go to ``CelebA-HQ-img/`` at 1024 px, else to ``CelebA-HQ-img-{size}/``.

    Args:
        root: Folder to write (created).
        celeba_root: The CelebA fixture to draw from.
        count: Number of HQ images (at most the CelebA rows).
        size: Side of the square images.
        seed: Same seed, same files.

    Returns:
        ``root``.

    >>> import tempfile
    >>> celeba_root = make_celeba(tempfile.mkdtemp(), identities=3, images_per_identity=2)
    >>> (make_celebahq(tempfile.mkdtemp(), celeba_root, count=2) / "CelebA-HQ-img-64").is_dir()
    True
    """
    root, attribute_file = Path(root), Path(celeba_root) / celeba.ATTRIBUTE_FILE
    rows, _ = read_attribute_file(attribute_file, BadRows(attribute_file, "error"))
    if not 0 < count <= len(rows):
        raise ValueError(f"count {count}: expected 1 to {len(rows)} (the rows of {attribute_file})")
    folder = root / (celebahq.DEFAULT_IMAGES if size == 1024 else f"{celebahq.DEFAULT_IMAGES}-{size}")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    attribute_lines, mapping_lines = [str(count), " ".join(ATTRIBUTES)], ["idx orig_idx orig_file"]
    for index, row_index in enumerate(rng.choice(len(rows), count, replace=False)):
        row = rows[row_index]
        labels = {name: bool(value) for name, value in zip(ATTRIBUTES, row.attributes)}
        draw_face(labels, (size, size), rng, HQ_GEOMETRY).save(folder / f"{index}.jpg", quality=90)
        attribute_lines.append(_attribute_row(f"{index}.jpg", labels, width=1))
        mapping_lines.append(f"{index} {int(Path(row.name).stem) - 1} {row.name}")
    _write_lines(root / celebahq.ATTRIBUTE_FILE, attribute_lines)
    _write_lines(root / celebahq.MAPPING_FILE, mapping_lines)
    return root


def make_scut(root: str | Path, count: int = 60, size: int = 224, seed: int = 0) -> Path:
    """Writes a SCUT-FBP5500-layout dataset whose scores show as eye size and skin blemishes.

    As in the shared data (the official 60/40 training part), ``All_labels.txt`` and
    ``train.txt`` list every image, with no ``test.txt`` or fold files. Names follow the
    release (``AF1.jpg``, ``AM1.jpg``, ``CF1.jpg``, ``CM1.jpg`` ...) in its 4:4:1.5:1.5 mix.

    Args:
        root: Folder to write (created).
        count: Number of images.
        size: Side of the square images.
        seed: Same seed, same files.

    Returns:
        ``root``.

    >>> import tempfile
    >>> len(list((make_scut(tempfile.mkdtemp(), count=8) / "Images").iterdir()))
    8
    """
    root = Path(root)
    (root / scut.DEFAULT_IMAGES).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shares = {"AF": 2000, "AM": 2000, "CF": 750, "CM": 750}
    ends = np.round(np.cumsum(list(shares.values())) / 5500 * count).astype(int)
    names = [f"{group}{i + 1}.jpg" for group, start, end in zip(shares, [0, *ends[:-1]], ends)
             for i in range(end - start)]
    lines = []
    for position in rng.permutation(len(names)):
        name, asian = names[position], names[position].startswith("A")
        labels = random_labels(rng, male=name[1] == "M")
        if asian and not labels["Wearing_Hat"] and not labels["Bald"]:
            labels.update({colour: colour == "Black_Hair" for colour in HAIR_COLOURS})
        score, tone = random_beauty(rng), rng.uniform(0.2, 0.55) if asian else rng.uniform(0.0, 0.3)
        image = draw_face(labels, (size, size), rng, SCUT_GEOMETRY, tone, score)
        image.save(root / scut.DEFAULT_IMAGES / name, quality=90)
        lines.append(f"{name} {score:g}")
    _write_lines(root / scut.LABEL_FILE, lines)
    _write_lines(root / scut.SPLIT_FOLDER / "train.txt", lines)
    return root


def make_csv(path: str | Path, images_dir: str | Path, count: int, seed: int = 0) -> Path:
    """Writes a team CSV (see :data:`faceattr.data.readers.csvfile.LAYOUT`) and its drawn images.

    Columns: ``image`` (relative to the CSV's folder), ``group`` (one of ``count // 3``
    people), ``beauty`` (half the rows; shown as in :func:`make_scut`) and
    :data:`CSV_ATTRIBUTES` as 1/0, about 10% left empty (unknown). No ``split`` column.

    Args:
        path: The CSV file to write.
        images_dir: Folder for the images (created).
        count: Number of rows and images.
        seed: Same seed, same files.

    Returns:
        ``path``.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> make_csv(folder / "team.csv", folder / "photos", count=3).read_text().splitlines()[1][:26]
    'photos/team_0001.jpg,perso'
    """
    path, images_dir = Path(path), Path(images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    people = [(random_labels(rng), float(rng.random())) for _ in range(max(1, count // 3))]
    rows = [["image", "group", "beauty", *CSV_ATTRIBUTES]]
    for index in range(count):
        person, name = index % len(people), f"team_{index + 1:04d}.jpg"
        labels = person_image_labels(rng, people[person][0])
        score = random_beauty(rng) if rng.random() < 0.5 else None
        draw_face(labels, rng=rng, tone=people[person][1], beauty=score).save(images_dir / name)
        cells = ["" if rng.random() < 0.1 else str(int(labels[attribute])) for attribute in CSV_ATTRIBUTES]
        image = Path(os.path.relpath(images_dir / name, path.parent)).as_posix()
        rows.append([image, f"person{person + 1}", "" if score is None else f"{score:g}", *cells])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows(rows)
    return path


def make_demo_data(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """Writes the Quick start data (``configs/demo.yaml``) in a few seconds.

    Sized so that a few CPU epochs at 64 px learn the drawn features: ``celeba/`` (1,500
    images of 300 people), ``celebahq/`` (300), ``scut_fbp5500/`` (400) and ``team.csv``
    (90 rows, images in ``team_images/``).

    Args:
        root: Folder to write (created).
        seed: Same seed, same files.

    Returns:
        Source kind (``celeba``, ``celebahq``, ``scut``, ``csv``) to the root to configure.
    """
    root = Path(root)
    celeba_root = make_celeba(root / "celeba", identities=300, images_per_identity=5, seed=seed)
    return {
        "celeba": celeba_root,
        "celebahq": make_celebahq(root / "celebahq", celeba_root, count=300, seed=seed + 1),
        "scut": make_scut(root / "scut_fbp5500", count=400, seed=seed + 2),
        "csv": make_csv(root / "team.csv", root / "team_images", count=90, seed=seed + 3),
    }
