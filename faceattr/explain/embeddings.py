"""Face embeddings as a collection: written to a file, read back, mapped in 2-D, searched, probed.

An embedding is the pooled features both heads of the network read
(:meth:`Predictor.iter_embed <faceattr.inference.predictor.Predictor.iter_embed>`). A collection file holds one
row per face: ``source`` (the input's path), ``face`` (1 = best detector score), the box ``x1 y1 x2 y2``, the
detector ``score``, ``beauty``, the 40 attribute probabilities (:data:`INDEX_COLUMNS`) and the ``vector``.
Two formats, chosen by the file's suffix:

- ``.parquet``: one file, the vector a list column; the format, normalisation and model in the schema's
  metadata under :data:`METADATA_KEY`. Needs ``pyarrow``.
- ``.npy``: the vectors ``(N, D)`` float32, and beside it ``NAME.csv``, the index: a first line
  ``# faceattr-embeddings {...}`` (the same metadata as JSON), then the columns' header and one row per face.

Both are written as the faces come (memory does not grow with the collection) and never overwrite a file.
:func:`project_2d` and :func:`plot_map` draw the collection coloured by an attribute or beauty, :func:`nearest`
finds "faces like this one" and :func:`probe` measures how well linear models read beauty and each attribute
from each normalisation (cross-validated ridge R² and logistic-regression ROC AUC).

>>> with EmbeddingWriter("faces.parquet", normalise="l2", model="default") as writer:  # doctest: +SKIP
...     writer.write(predictor.iter_embed(paths, normalise="l2"))
>>> collection = read_embeddings("faces.parquet")  # doctest: +SKIP
>>> nearest(collection.vectors, collection.vectors[0], k=3)  # doctest: +SKIP
[(0, 1.0), (17, 0.93), (4, 0.91)]
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceattr.attributes import ATTRIBUTES
from faceattr.errors import ConfigError, DatasetError
from faceattr.explain.sparsity import cross_validated_r2
from faceattr.files import open_exclusive, write_exclusive
from faceattr.inference.results import NORMALISATIONS, ImageEmbeddings, normalised

logger = logging.getLogger(__name__)

#: The format written into every collection's metadata; a file without it is not read.
FORMAT = "faceattr-embeddings/1"
#: The Parquet schema metadata key (and the ``.npy`` index's first-line tag) holding the metadata JSON.
METADATA_KEY = "faceattr.embeddings"
#: The columns of each face's row before its vector.
INDEX_COLUMNS: tuple[str, ...] = ("source", "face", "x1", "y1", "x2", "y2", "score", "beauty", *ATTRIBUTES)
#: The collection's suffixes and their formats.
FORMATS: dict[str, str] = {".parquet": "parquet", ".npy": "npy"}
#: What :func:`nearest` can rank by.
METRICS: tuple[str, ...] = ("cosine", "euclidean")
#: What :func:`project_2d` can map with.
MAP_METHODS: tuple[str, ...] = ("pca", "umap")
#: Total bytes of the ``.npy`` header the writer reserves (rewritten with the final shape when it closes).
_NPY_HEADER_BYTES = 128
_NPY_MAGIC = b"\x93NUMPY\x01\x00"


def collection_format(path: str | Path) -> str:
    """``parquet`` or ``npy``, from ``path``'s suffix.

    Raises:
        ConfigError: Another suffix (the message names the file and the suffixes known).

    >>> collection_format("faces.npy"), collection_format("a/faces.PARQUET")
    ('npy', 'parquet')
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"{path}: an embeddings file must end in {' or '.join(FORMATS)}")
    return FORMATS[suffix]


def index_path(path: str | Path) -> Path:
    """The index CSV beside a ``.npy`` collection: ``faces.npy`` -> ``faces.csv``."""
    return Path(path).with_suffix(".csv")


def collection_files(path: str | Path) -> list[Path]:
    """The files a collection at ``path`` is made of: itself, and for ``.npy`` its index."""
    path = Path(path)
    return [path, index_path(path)] if collection_format(path) == "npy" else [path]


@dataclass
class Embeddings:
    """A collection read back: its rows' index columns and their vectors.

    Attributes:
        columns: Each of :data:`INDEX_COLUMNS` as an array of ``N`` values (``source`` strings, ``face``
            integers, floats for the rest).
        vectors: ``(N, D)`` float32.
        normalise: How the vectors were scaled when written (``none``, ``l1`` or ``l2``).
        model: The model that computed them (its path, or ``default``).
    """

    columns: dict[str, np.ndarray]
    vectors: np.ndarray
    normalise: str
    model: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def values(self, name: str) -> np.ndarray:
        """The ``N`` values of ``beauty`` or an attribute's probability, to colour a map by.

        Raises:
            ConfigError: ``name`` is neither (the message lists what is).
        """
        if name != "beauty" and name not in ATTRIBUTES:
            raise ConfigError(f"{name!r}: not a column to colour by; use beauty or one of {', '.join(ATTRIBUTES)}")
        return self.columns[name].astype(np.float64)

    def rows_of(self, source: str, face: int | None = None) -> np.ndarray:
        """The row numbers of ``source`` (its path as written, or just its file name when that is unique).

        Args:
            source: A path as given to ``faceattr embed``, or a file name.
            face: Only this face of it (1 = best detector score); ``None``: all its faces.

        Raises:
            ConfigError: No row has that source (or face), or a file name matches several paths.
        """
        sources = self.columns["source"]
        rows = np.flatnonzero(sources == source)
        if rows.size == 0:
            names = np.array([Path(s).name for s in sources])
            rows = np.flatnonzero(names == Path(source).name)
            if len(set(sources[rows])) > 1:
                raise ConfigError(f"{source!r}: several sources have that file name; give its path as written: "
                                  + ", ".join(sorted(set(sources[rows]))[:5]))
        if face is not None:
            rows = rows[self.columns["face"][rows] == face]
        if rows.size == 0:
            raise ConfigError(f"{source!r}{'' if face is None else f' face {face}'}: not in the collection")
        return rows


class EmbeddingWriter:
    """Writes a collection face by face; the files appear whole when it closes (a context manager).

    Args:
        path: A ``.parquet`` or ``.npy`` file (see the module's docstring); its folder must exist.
        normalise: How the vectors written are scaled (recorded in the metadata).
        model: What computed them (recorded).

    Raises:
        ConfigError: ``path`` has another suffix, it or its index exists (never overwritten: the message
            names it), or ``.parquet`` without ``pyarrow``.
    """

    def __init__(self, path: str | Path, normalise: str, model: str):
        self.path = Path(path)
        self.format = collection_format(self.path)
        for existing in collection_files(self.path):
            if existing.exists() or existing.is_symlink():
                raise ConfigError(f"{existing}: exists; not overwritten (remove it or choose another --out)")
        if self.format == "parquet":
            _pyarrow()
        self.metadata: dict[str, Any] = {"format": FORMAT, "normalise": normalise, "model": model}
        self.faces = 0
        self.dimension: int | None = None
        self._files = contextlib.ExitStack()
        self._parquet: Any = None
        if self.format == "npy":
            self._vectors = self._files.enter_context(open_exclusive(self.path))
            self._vectors.write(b"\0" * _NPY_HEADER_BYTES)  # the header, once the shape is known
            self._index_file = self._files.enter_context(open_exclusive(index_path(self.path)))
            self._index_text = io.TextIOWrapper(self._index_file, encoding="utf-8", newline="")
            self._index = csv.writer(self._index_text)
        else:
            self._out = self._files.enter_context(open_exclusive(self.path))

    def write(self, images: Iterable[ImageEmbeddings]) -> int:
        """Appends the faces of ``images`` (consumed as they come) and returns how many were written.

        Raises:
            ConfigError: A vector's length differs from the first one's.
        """
        written = 0
        for image in images:
            if not image.faces:
                continue
            vectors = np.stack([face.vector for face in image.faces]).astype(np.float32)
            if self.dimension is None:
                self.dimension = vectors.shape[1]
            if vectors.shape[1] != self.dimension:
                raise ConfigError(f"{image.source}: vectors of {vectors.shape[1]} values, the collection's have "
                                  f"{self.dimension}")
            rows = [_row(image.source, number, face.face) for number, face in enumerate(image.faces, start=1)]
            self._append(rows, vectors)
            written += len(rows)
        self.faces += written
        return written

    def _append(self, rows: list[list[Any]], vectors: np.ndarray) -> None:
        if self.format == "npy":
            if self.faces == 0 and self._index_text.tell() == 0:
                self._index_text.write(f"# {METADATA_KEY} {json.dumps(self.metadata)}\n")
                self._index.writerow(INDEX_COLUMNS)
            self._index.writerows(rows)
            self._vectors.write(vectors.tobytes())
            return
        pa = _pyarrow()
        table = pa.table({**{name: [row[k] for row in rows] for k, name in enumerate(INDEX_COLUMNS)},
                          "vector": pa.array(list(vectors), type=pa.list_(pa.float32()))}, schema=self._schema())
        if self._parquet is None:
            self._parquet = _pyarrow("parquet").ParquetWriter(self._out, self._schema())
        self._parquet.write_table(table)

    def _schema(self) -> Any:
        pa = _pyarrow()
        fields = [pa.field("source", pa.string()), pa.field("face", pa.int32()),
                  *(pa.field(name, pa.float64()) for name in INDEX_COLUMNS[2:8]),
                  *(pa.field(name, pa.float32()) for name in ATTRIBUTES), pa.field("vector", pa.list_(pa.float32()))]
        metadata = {**self.metadata, "dimension": self.dimension}
        return pa.schema(fields, metadata={METADATA_KEY: json.dumps(metadata)})

    def close(self) -> None:
        """Finishes the files (an empty collection is a valid file of no rows) and puts them in place."""
        with self._files:
            if self.format == "npy":
                if self._index_text.tell() == 0:
                    self._index_text.write(f"# {METADATA_KEY} {json.dumps(self.metadata)}\n")
                    self._index.writerow(INDEX_COLUMNS)
                self._index_text.flush()
                self._index_text.detach()  # the binary file is closed by open_exclusive, which puts it in place
                self._vectors.seek(0)
                self._vectors.write(_npy_header((self.faces, self.dimension or 0)))
            else:
                if self._parquet is None:
                    self._parquet = _pyarrow("parquet").ParquetWriter(self._out, self._schema())
                self._parquet.close()

    def abandon(self) -> None:
        """Drops what was written: no file is put in place."""
        self._files.__exit__(RuntimeError, RuntimeError("abandoned"), None)

    def __enter__(self) -> EmbeddingWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: Any) -> None:
        self.abandon() if kind is not None else self.close()


def _row(source: str, number: int, face: Any) -> list[Any]:
    """A face's values in :data:`INDEX_COLUMNS` order."""
    return [source, number, *map(float, face.box), float(face.score), float(face.beauty),
            *(float(face.probabilities[name]) for name in ATTRIBUTES)]


def _npy_header(shape: tuple[int, int]) -> bytes:
    """A version 1.0 ``.npy`` header for float32 ``shape``, padded to :data:`_NPY_HEADER_BYTES`."""
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"
    body = text.ljust(_NPY_HEADER_BYTES - len(_NPY_MAGIC) - 2 - 1) + "\n"
    return _NPY_MAGIC + len(body).to_bytes(2, "little") + body.encode("latin1")


def _pyarrow(module: str | None = None) -> Any:
    """``pyarrow`` (or ``pyarrow.MODULE``), or ConfigError saying how to install it."""
    import importlib

    try:
        return importlib.import_module("pyarrow" + (f".{module}" if module else ""))
    except ImportError as error:
        raise ConfigError("Parquet embeddings need the pyarrow package: pip install \"faceattr[embeddings]\"; "
                          "or write .npy") from error


def write_embeddings(path: str | Path, images: Iterable[ImageEmbeddings], normalise: str, model: str) -> int:
    """Writes the faces of ``images`` (consumed as they come) to a new collection; returns how many faces.

    An error while writing leaves no file behind. Raises as :class:`EmbeddingWriter`.
    """
    with EmbeddingWriter(path, normalise, model) as writer:
        return writer.write(images)


def read_embeddings(path: str | Path) -> Embeddings:
    """Reads a collection written by :func:`write_embeddings` (or ``faceattr embed``).

    Raises:
        DatasetError: The file (or the ``.npy``'s index) is missing, not a faceattr embeddings collection,
            or its parts disagree (the message names the file).
        ConfigError: An unknown suffix, or ``.parquet`` without ``pyarrow``.
    """
    path = Path(path)
    reader = _read_parquet if collection_format(path) == "parquet" else _read_npy
    try:
        return reader(path)
    except OSError as error:
        raise DatasetError(f"{error.filename or path}: cannot read ({error.strerror or error})") from error


def _not_ours(path: Path, why: str) -> DatasetError:
    return DatasetError(f"{path}: not a faceattr embeddings file ({why}); write one with faceattr embed")


def _checked_metadata(path: Path, text: str | bytes | None) -> dict[str, Any]:
    try:
        metadata = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise _not_ours(path, f"no {FORMAT} metadata")
    if metadata.get("normalise") not in NORMALISATIONS:
        raise _not_ours(path, f"normalise {metadata.get('normalise')!r}")
    return metadata


def _read_parquet(path: Path) -> Embeddings:
    parquet = _pyarrow("parquet")
    try:
        table = parquet.read_table(path)
    except _pyarrow().ArrowInvalid as error:
        raise _not_ours(path, f"not Parquet: {error}") from error
    metadata = _checked_metadata(path, (table.schema.metadata or {}).get(METADATA_KEY.encode()))
    missing = [name for name in (*INDEX_COLUMNS, "vector") if name not in table.column_names]
    if missing:
        raise _not_ours(path, "no column " + ", ".join(missing[:3]))
    vectors = table.column("vector").combine_chunks()
    flat = vectors.flatten().to_numpy().astype(np.float32)
    columns = {name: table.column(name).to_numpy() for name in INDEX_COLUMNS}
    columns["source"] = columns["source"].astype(str)
    return Embeddings(columns, flat.reshape(len(table), -1) if len(table) else np.zeros((0, 0), np.float32),
                      metadata["normalise"], str(metadata.get("model")), metadata)


def _read_npy(path: Path) -> Embeddings:
    index = index_path(path)
    with index.open(encoding="utf-8", newline="") as file:
        first = file.readline()
        tag = f"# {METADATA_KEY} "
        metadata = _checked_metadata(index, first[len(tag):] if first.startswith(tag) else None)
        rows = list(csv.reader(file))
    if not rows or tuple(rows[0]) != INDEX_COLUMNS:
        raise _not_ours(index, "its header is not the index columns")
    try:
        vectors = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise _not_ours(path, f"not a .npy array: {error}") from error
    if vectors.ndim != 2 or vectors.shape[0] != len(rows) - 1:
        raise DatasetError(f"{path}: {vectors.shape} vectors for the {len(rows) - 1} rows of {index}")
    body = rows[1:]
    columns: dict[str, np.ndarray] = {"source": np.array([row[0] for row in body], dtype=str)}
    try:
        columns["face"] = np.array([int(row[1]) for row in body], dtype=np.int32)
        for k, name in enumerate(INDEX_COLUMNS[2:], start=2):
            columns[name] = np.array([float(row[k]) for row in body], dtype=np.float64)
    except (ValueError, IndexError) as error:
        raise DatasetError(f"{index}: a row that is not a face's index row ({error})") from error
    return Embeddings(columns, vectors.astype(np.float32), metadata["normalise"], str(metadata.get("model")),
                      metadata)


def project_2d(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """The vectors ``(N, D)`` mapped to ``(N, 2)``: principal components (sklearn), or UMAP when installed.

    Raises:
        ConfigError: An unknown ``method``, ``umap`` without the ``umap-learn`` package, or fewer than 3 vectors.
    """
    if method not in MAP_METHODS:
        raise ConfigError(f"method: expected one of {', '.join(MAP_METHODS)}, got {method!r}")
    if len(vectors) < 3:
        raise ConfigError(f"a map needs at least 3 faces, the collection has {len(vectors)}")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(vectors)
    try:
        import umap
    except ImportError as error:
        raise ConfigError("method 'umap' needs the umap-learn package (pip install umap-learn); "
                          "or use pca") from error
    return umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(vectors) - 1)).fit_transform(vectors)


def plot_map(coordinates: np.ndarray, values: np.ndarray, label: str, path: str | Path, title: str = "") -> Path:
    """Writes a scatter plot of ``coordinates`` ``(N, 2)`` coloured by ``values`` as a new PNG at ``path``.

    Raises:
        ConfigError: ``path`` exists (never overwritten).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    path = Path(path)
    if path.exists() or path.is_symlink():
        raise ConfigError(f"{path}: exists; not overwritten (remove it or choose another --out)")
    figure, axes = pyplot.subplots(figsize=(7, 6))
    points = axes.scatter(coordinates[:, 0], coordinates[:, 1], c=values, cmap="viridis", s=12, alpha=0.8)
    figure.colorbar(points, ax=axes, label=label)
    axes.set(xlabel="component 1", ylabel="component 2", title=title or f"faces coloured by {label}")
    encoded = io.BytesIO()
    figure.savefig(encoded, format="png", dpi=100, bbox_inches="tight")
    pyplot.close(figure)
    write_exclusive(path, lambda file: file.write(encoded.getvalue()))
    return path


def nearest(vectors: np.ndarray, query: np.ndarray, k: int = 5, metric: str = "cosine") -> list[tuple[int, float]]:
    """The ``k`` rows of ``vectors`` most like ``query``: ``(row, similarity)``, most alike first.

    Args:
        vectors: ``(N, D)``.
        query: ``(D,)``.
        k: How many.
        metric: ``cosine`` (the cosine of the angle: the vectors L2-normalised, so their scale does not
            matter; 1 = same direction) or ``euclidean`` (given as minus the distance, so higher is nearer).

    Raises:
        ConfigError: An unknown metric, ``k`` < 1, or ``query`` of another length.

    >>> nearest(np.array([[1.0, 0.0], [0.0, 2.0], [2.0, 0.1]]), np.array([3.0, 0.0]), k=2)
    [(0, 1.0), (2, 0.9988)]
    """
    if metric not in METRICS:
        raise ConfigError(f"metric: expected one of {', '.join(METRICS)}, got {metric!r}")
    if k < 1:
        raise ConfigError(f"k: must be at least 1, got {k}")
    if query.shape != vectors.shape[1:]:
        raise ConfigError(f"the query has {query.shape[-1]} values, the collection's vectors {vectors.shape[1]}")
    if metric == "cosine":
        scores = normalised(vectors, "l2").astype(np.float64) @ normalised(query[None, :], "l2")[0]
    else:
        scores = -np.linalg.norm(vectors.astype(np.float64) - query, axis=1)
    order = np.argsort(-scores, kind="stable")[:k]
    return [(int(row), round(float(scores[row]), 4)) for row in order]


@dataclass(frozen=True)
class ProbeResult:
    """How well a linear model reads one target from one normalisation of the embeddings.

    Attributes:
        normalise: ``none``, ``l1`` or ``l2``.
        target: ``beauty`` or an attribute's name.
        metric: ``r2`` (ridge regression, out-of-fold R²) or ``auc`` (logistic regression, out-of-fold
            ROC AUC: threshold-free, 0.5 = chance, whatever the attribute's prevalence).
        mean: The metric's mean over the repeats.
        spread: Its standard deviation over the repeats.
        faces: How many faces had the label.
    """

    normalise: str
    target: str
    metric: str
    mean: float
    spread: float
    faces: int


def cross_validated_auc(features: np.ndarray, labels: np.ndarray, folds: int = 5, repeats: int = 2,
                        seed: int = 0) -> tuple[float, float]:
    """Out-of-fold ROC AUC of logistic regression predicting binary ``labels`` from ``features``.

    As :func:`~faceattr.explain.sparsity.cross_validated_r2` for ridge: each repeat splits the faces into
    ``folds`` stratified folds, fits features standardised then an L2-penalised logistic regression (C=1)
    on the others, and scores all its out-of-fold decisions at once.

    Returns:
        ``(mean AUC, standard deviation)`` over the repeats.

    Raises:
        ConfigError: The labels are not 0/1, or the rarer class has fewer than ``folds`` faces.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    if not np.isin(labels, (0, 1)).all():
        raise ConfigError("labels must be 0 or 1")
    rarer = int(min(labels.sum(), len(labels) - labels.sum()))
    if rarer < folds:
        raise ConfigError(f"the rarer class has {rarer} faces, fewer than the {folds} folds")
    scores = []
    for repeat in range(repeats):
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + repeat)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        decisions = cross_val_predict(model, features, labels, cv=splits, method="decision_function")
        scores.append(roc_auc_score(labels, decisions))
    return float(np.mean(scores)), float(np.std(scores))


def probe(embeddings: Embeddings, labels: Mapping[str, Mapping[str, float]], folds: int = 5, repeats: int = 2,
          seed: int = 0) -> list[ProbeResult]:
    """Linear probes of a collection: for each normalisation, ridge R² for ``beauty`` and AUC for each attribute.

    Labels are per source: each labelled source's first face (the best detector score; the only one of an
    aligned face) carries them. Normalisations are computed from the stored vectors: all three from a
    collection written raw (``none``); from an ``l1`` or ``l2`` one only those two (raw is lost).

    Args:
        embeddings: A collection (:func:`read_embeddings`).
        labels: For each source (path as written, or file name), its targets: ``beauty`` (a rating) and/or
            attribute names (1 present, 0 absent); other names are ignored. See :func:`read_labels`.
        folds: Cross-validation folds.
        repeats: Repeats with other splits.
        seed: Seeds the splits.

    Returns:
        One :class:`ProbeResult` per normalisation and target with enough labels (an attribute whose rarer
        class has fewer than ``folds`` faces is left out, with a log line).

    Raises:
        ConfigError: No source of the collection is in ``labels``.
    """
    rows, targets = _labelled_rows(embeddings, labels)
    usable = NORMALISATIONS if embeddings.normalise == "none" else tuple(n for n in NORMALISATIONS if n != "none")
    results = []
    for normalise in usable:
        vectors = normalised(embeddings.vectors[rows], normalise)
        for target, values in targets.items():
            known = ~np.isnan(values)
            if target == "beauty":
                mean, spread = cross_validated_r2(vectors[known], values[known], folds, repeats, seed=seed)
                metric = "r2"
            else:
                try:
                    mean, spread = cross_validated_auc(vectors[known], values[known].astype(int), folds, repeats, seed)
                except ConfigError as error:
                    logger.info("probe of %s left out: %s", target, error)
                    continue
                metric = "auc"
            results.append(ProbeResult(normalise, target, metric, mean, spread, int(known.sum())))
    return results


def _labelled_rows(embeddings: Embeddings, labels: Mapping[str, Mapping[str, float]]
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The rows whose source is labelled (first faces only) and each target's values there (NaN: unlabelled)."""
    by_name = {Path(source).name: values for source, values in labels.items()}
    rows, found = [], []
    for row, (source, face) in enumerate(zip(embeddings.columns["source"], embeddings.columns["face"])):
        values = labels.get(source, by_name.get(Path(source).name))
        if face == 1 and values is not None:
            rows.append(row)
            found.append(values)
    if not rows:
        raise ConfigError("no source of the collection has labels (matched by path as written, then file name)")
    names = [name for name in ("beauty", *ATTRIBUTES) if any(name in values for values in found)]
    targets = {name: np.array([float(values.get(name, np.nan)) for values in found]) for name in names}
    return np.array(rows), targets


def read_labels(path: str | Path) -> dict[str, dict[str, float]]:
    """Labels from a CSV: a ``source`` column (path or file name) and any of ``beauty`` and the attributes.

    Attribute values may be 1/0 or CelebA's 1/-1 (read as 0); an empty cell is unlabelled.

    Raises:
        DatasetError: No ``source`` column, no target column, a column that looks like a misspelt target
            (``Smilling``: refused as training's label CSV refuses it, not silently left out), or a value that
            is not a number (named with its line and column).
    """
    from faceattr.data.readers.csvfile import misspelt_column

    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as file:
            reader = csv.DictReader(file)
            fields = reader.fieldnames or []
            targets = [name for name in fields if name == "beauty" or name in ATTRIBUTES]
            if "source" not in fields or not targets:
                raise DatasetError(f"{path}: needs a source column and beauty or attribute columns, has {fields}")
            for name in fields:
                meant = None if name == "source" or name in targets else misspelt_column(name)
                if meant is not None:
                    raise DatasetError(f"{path}:1: column {name!r} looks like a misspelt {meant!r}; rename it")
            labels = {}
            for line, row in enumerate(reader, start=2):
                values = {}
                for name in targets:
                    if row[name] in ("", None):
                        continue
                    try:
                        value = float(row[name])
                    except ValueError as error:
                        raise DatasetError(f"{path}:{line}: {name}: not a number: {row[name]!r}") from error
                    values[name] = value if name == "beauty" else float(value > 0)
                labels[row["source"]] = values
    except OSError as error:
        raise DatasetError(f"{path}: cannot read labels ({error.strerror or error})") from error
    return labels


def dataset_labels(kind: str, root: str | Path) -> dict[str, dict[str, float]]:
    """Labels read by a dataset reader, keyed by image path: CelebA's attributes (``celeba``, its
    ``list_attr_celeba.txt``) or SCUT-FBP5500's beauty ratings (``scut``).

    Raises:
        ConfigError: Another ``kind``.
        DatasetError: As the reader (missing files...).
    """
    from faceattr.data.readers.celeba import read_celeba
    from faceattr.data.readers.scut import read_scut

    if kind == "celeba":
        return {str(record.path): {name: float(value) for name, value, known in
                                   zip(ATTRIBUTES, record.attributes, record.attribute_mask) if known}
                for record in read_celeba(root).records}
    if kind == "scut":
        return {str(record.path): {"beauty": float(record.beauty)} for record in read_scut(root).records}
    raise ConfigError(f"dataset: expected celeba or scut, got {kind!r}")


def probe_table(results: Sequence[ProbeResult]) -> str:
    """The probes as a Markdown table: one row per target, one column per normalisation (mean ± spread).

    >>> print(probe_table([ProbeResult("none", "beauty", "r2", 0.5, 0.01, 10), ProbeResult("l2", "beauty", "r2",
    ...     0.6, 0.02, 10)]))
    | target | metric | faces | none | l2 |
    |---|---|---|---|---|
    | beauty | r2 | 10 | 0.500 ± 0.010 | 0.600 ± 0.020 |
    """
    normalisations = list(dict.fromkeys(result.normalise for result in results))
    cells: dict[tuple[str, str], ProbeResult] = {(r.target, r.normalise): r for r in results}
    lines = ["| target | metric | faces | " + " | ".join(normalisations) + " |",
             "|---|---|---|" + "---|" * len(normalisations)]
    for target in dict.fromkeys(result.target for result in results):
        first = next(r for r in results if r.target == target)
        shown = [f"{cells[target, n].mean:.3f} ± {cells[target, n].spread:.3f}" if (target, n) in cells else ""
                 for n in normalisations]
        lines.append(f"| {target} | {first.metric} | {first.faces} | " + " | ".join(shown) + " |")
    return "\n".join(lines)

