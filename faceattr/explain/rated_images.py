"""The rated images and the networks of ``faceattr analyze sparsity``.

The images come from SCUT-FBP5500 (:func:`scut_rated_images`: its mean beauty ratings) or from any folder
with a CSV of ratings (:func:`read_ratings_csv`: e.g. the Chicago Face Database, or paintings).
:func:`run_sparsity_analysis` loads the analysed model and the ones compared with it, gives each the input
it was trained with (:func:`network_input`) and runs :func:`~faceattr.explain.analysis.analyze_sparsity`.

The ratings CSV (UTF-8, a byte-order mark allowed)::

    image,rating
    faces/CFD-AF-200.jpg,4.12
    faces/CFD-AM-201.jpg,2.87

A header row naming an ``image`` and a ``rating`` column (other columns are ignored, in any order);
then one row per image: its path relative to the image folder (an absolute path is taken as it is) and
a finite number. An image listed twice, a missing file, a file that is not an image or a rating that is
not a finite number is refused with the CSV's file and line.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceattr.errors import ConfigError, DatasetError
from faceattr.explain.analysis import NetworkInput, SparsityAnalysis, analyze_sparsity

#: The SCUT-FBP5500 folder ``faceattr analyze sparsity`` reads by default: ``../shared/data`` beside the project.
DEFAULT_SCUT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "scut_fbp5500"
#: The columns a ratings CSV must have.
CSV_COLUMNS: tuple[str, str] = ("image", "rating")
#: How SCUT is read for a model that was not trained on it: the reader's default folds, the whole image.
DEFAULT_SCUT_SOURCE: dict[str, Any] = {"folds": 5, "fold": 0, "crop": None}


@dataclass
class RatedImages:
    """Image files and their ratings, in the same order.

    Attributes:
        paths: The image files.
        ratings: ``(N,)`` finite ratings.
        scut: Whether they are SCUT-FBP5500 faces (each network then reads them with its SCUT crop).
    """

    paths: list[Path]
    ratings: np.ndarray
    scut: bool = False

    def drawn(self, limit: int | None, seed: int = 0) -> RatedImages:
        """``limit`` of the images drawn at random (seeded), in their original order; all when ``None`` or more.

        A draw rather than the first ``limit``: SCUT's names sort by group (AF, AM, CF, CM), so a prefix
        would be one group.

        Raises:
            ConfigError: For a ``limit`` below 2 (no cross-validation is possible).
        """
        if limit is None or limit >= len(self.paths):
            return self
        if limit < 2:
            raise ConfigError(f"limit must be at least 2, got {limit}")
        chosen = sorted(np.random.default_rng(seed).choice(len(self.paths), limit, replace=False))
        return RatedImages([self.paths[index] for index in chosen], self.ratings[chosen], self.scut)


def _is_image(path: Path) -> str | None:
    """``None`` when ``path``'s header is an image PIL knows (nothing decoded), else why not."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        return f"not a readable image ({error})"


def read_ratings_csv(csv_file: str | Path, folder: str | Path | None = None) -> RatedImages:
    """Reads a ratings CSV (see the module docstring) and checks every image it names.

    Args:
        csv_file: The CSV.
        folder: The folder the image paths are relative to (default: the CSV's folder).

    Returns:
        The images and ratings, in the CSV's order.

    Raises:
        DatasetError: For a missing or unreadable CSV, a header without ``image`` and ``rating``, fewer
            than 2 rows, or a bad row (empty, duplicate or missing image, a file that is not an image, a
            rating that is not a finite number); the message names the CSV and line.

    >>> import tempfile
    >>> from PIL import Image
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("a.png", "b.png"):
    ...     Image.new("RGB", (4, 4)).save(folder / name)
    >>> _ = (folder / "ratings.csv").write_text("image,rating\\na.png,3.5\\nb.png,2\\n")
    >>> read_ratings_csv(folder / "ratings.csv").ratings.tolist()
    [3.5, 2.0]
    """
    csv_file = Path(csv_file)
    folder = csv_file.parent if folder is None else Path(folder)
    try:
        text = csv_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read the ratings: {error}", csv_file) from error
    reader = csv.reader(text.splitlines())
    header = [cell.strip() for cell in next(reader, [])]
    missing = [column for column in CSV_COLUMNS if column not in header]
    if missing:
        raise DatasetError(f"the header must name the columns {list(CSV_COLUMNS)}; {missing} not in {header}",
                           csv_file, 1)
    image_column, rating_column = (header.index(column) for column in CSV_COLUMNS)
    paths: list[Path] = []
    ratings: list[float] = []
    first_line: dict[Path, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # a blank line, e.g. at the end
        if len(row) <= max(image_column, rating_column):
            raise DatasetError(f"expected {len(header)} fields, got {len(row)}", csv_file, line)
        name, rating = row[image_column].strip(), row[rating_column].strip()
        if not name:
            raise DatasetError("the image is empty", csv_file, line)
        path = folder / name
        key = Path(path).resolve()
        if key in first_line:
            raise DatasetError(f"image {name!r} is listed twice (first on line {first_line[key]})", csv_file, line)
        first_line[key] = line
        if not path.is_file():
            raise DatasetError(f"image {name!r} not found in {folder}", csv_file, line)
        problem = _is_image(path)
        if problem:
            raise DatasetError(f"image {name!r}: {problem}", csv_file, line)
        try:
            value = float(rating)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DatasetError(f"rating {rating!r} is not a finite number", csv_file, line)
        paths.append(path)
        ratings.append(value)
    if len(paths) < 2:
        raise DatasetError(f"{len(paths)} rated image(s): the analysis needs at least 2", csv_file)
    return RatedImages(paths, np.array(ratings))


def scut_source(config: Mapping[str, Any]) -> dict[str, Any]:
    """A training config's SCUT source settings (``{}`` when the model was not trained on SCUT).

    Args:
        config: The training config, as a dict (:attr:`~faceattr.models.deployed.DeployedModel.config`).

    >>> scut_source({"data": {"sources": [{"kind": "celeba"}, {"kind": "scut", "fold": 1}]}})
    {'kind': 'scut', 'fold': 1}
    """
    for source in config.get("data", {}).get("sources", []):
        if source.get("kind") == "scut":
            return source
    return {}


def scut_rated_images(root: str | Path, source: Mapping[str, Any] | None = None,
                      held_out: bool = False) -> RatedImages:
    """SCUT-FBP5500's faces and mean beauty ratings, sorted by path.

    Args:
        root: The SCUT-FBP5500 folder.
        source: The analysed model's SCUT source (:func:`scut_source`); its folds and fold pick the
            held-out faces, as training read them. ``None`` or ``{}``: :data:`DEFAULT_SCUT_SOURCE`.
        held_out: Keep only the faces of the source's validation fold (those the model was not trained on).

    Returns:
        The rated faces.

    Raises:
        ConfigError: ``held_out`` without a SCUT ``source`` (every face is then held out).
        DatasetError: A missing or malformed SCUT file.
    """
    from faceattr.data.readers.scut import read_scut

    if held_out and not source:
        raise ConfigError("held out: the model was not trained on SCUT (no scut source in its config), so every "
                          "face is held out: drop the held-out selection")
    settings = {**DEFAULT_SCUT_SOURCE, **{key: value for key, value in (source or {}).items() if value is not None}}
    records = read_scut(root, folds=settings["folds"], fold=settings["fold"]).records
    if held_out:
        records = [record for record in records if record.split == "val"]
    records = sorted(records, key=lambda record: str(record.path))
    return RatedImages([record.path for record in records], np.array([record.beauty for record in records]),
                       scut=True)


def network_input(model: Any, scut: bool) -> NetworkInput:
    """How a deployed model reads the rated images: its input size, and its SCUT crop for SCUT faces.

    Other images (a ratings CSV's) are read whole, as is SCUT by a model not trained on it.

    Args:
        model: A :class:`~faceattr.models.deployed.DeployedModel` (not an ONNX export: its weights are needed).
        scut: Whether the images are SCUT-FBP5500 faces.

    Raises:
        CheckpointError: An ONNX export, or weights that do not fit the network.
    """
    crop = scut_source(model.config).get("crop") if scut else None
    return NetworkInput(model.build_network(), model.image_size,
                        None if crop is None else tuple(float(value) for value in crop), model.where)


def run_sparsity_analysis(root: str | Path | None = None, ratings_csv: str | Path | None = None,
                          model: str | Path | None = None, compare: Mapping[str, str | Path] | None = None,
                          limit: int | None = None, held_out: bool = False, untrained: bool = True,
                          batch_size: int = 64, folds: int = 10, repeats: int = 5,
                          measures: Sequence[str] | None = None,
                          progress: Callable[[str], None] | None = None) -> SparsityAnalysis:
    """Loads the rated images and the networks and runs the sparsity analysis (``faceattr analyze sparsity``).

    Args:
        root: The SCUT-FBP5500 folder, or with ``ratings_csv`` the folder its image paths are relative to
            (default: :data:`DEFAULT_SCUT_ROOT`, or the CSV's folder).
        ratings_csv: A ratings CSV (see the module docstring); ``None``: SCUT-FBP5500's ratings.
        model: The analysed model (default: the installed one), measured as ``trained`` and, with
            ``untrained``, beside its architecture with random weights.
        compare: Other faceattr models by name, measured in the same pass.
        limit: Use this many images drawn at random (seed 0).
        held_out: SCUT only: the faces of the model's SCUT validation fold only.
        untrained: Also measure the untrained network.
        batch_size: Images per forward pass; folds, repeats: of the cross-validation (folds at most N).
        measures: Sparsity measures (default all).
        progress: Called with a line at each stage.

    Returns:
        The analysis.

    Raises:
        ConfigError: ``held_out`` with a CSV or a model not trained on SCUT, a bad ``limit`` or name.
        DatasetError: Bad SCUT files or a bad ratings CSV (file and line named).
        CheckpointError: A model that cannot be loaded or built.
    """
    from faceattr.models.deployed import DeployedModel

    analysed = DeployedModel.load(model)
    if ratings_csv is not None:
        if held_out:
            raise ConfigError("held_out applies to SCUT-FBP5500 only, not to a ratings CSV")
        rated = read_ratings_csv(ratings_csv, root)
    else:
        rated = scut_rated_images(DEFAULT_SCUT_ROOT if root is None else root, scut_source(analysed.config),
                                  held_out)
    rated = rated.drawn(limit)
    primary = network_input(analysed, rated.scut)
    others = {name: network_input(DeployedModel.load(path), rated.scut) for name, path in (compare or {}).items()}
    return analyze_sparsity(primary.network, rated.paths, rated.ratings, primary.image_size, primary.crop,
                            batch_size=batch_size, measures=measures, folds=min(folds, len(rated.paths)),
                            repeats=repeats, untrained=untrained, compare=others, model_name=primary.model,
                            progress=progress)
