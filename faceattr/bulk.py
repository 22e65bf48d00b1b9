"""Bulk prediction with Ray Data: a folder, a list file or a Parquet column of photos to a table of faces, resumable.

:func:`predict_collection` sends the photos through a Ray Data pipeline (``from_items`` ->
``map_batches`` on a pool of actors, each holding one :class:`~faceattr.inference.predictor.Predictor`)
and writes one row per face, in the results CSV's columns (:data:`~faceattr.inference.results.CSV_COLUMNS`)
plus ``attributes`` (the present ones, most probable first) and ``error``: a photo without a face
gives one row with empty face columns, an unreadable one a row with its ``error``.

The output (``OUT.parquet`` or ``OUT.csv``, chosen by the suffix) is a folder of part files, each
written whole through :mod:`faceattr.files`, and a marker file saying which model and decision
policy wrote them. A rerun with the same output skips the photos already in it, so an interrupted
run goes on where it stopped; an output that exists and is not such a folder is refused.
``pandas.read_parquet("OUT.parquet")`` or ``pyarrow.dataset`` read the Parquet parts as one table.

Ray runs locally (``ray_address=None``: one process per worker on this machine) or joins a
running cluster (``ray_address="auto"`` on a machine of a cluster started with ``ray start --head``;
see docs/RAY.md); on a cluster every machine needs faceattr installed and must see the photos at
the paths given (a shared file system), and the output is written by this process.

>>> summary = predict_collection("photos/", "faces.parquet", num_workers=4)  # doctest: +SKIP
>>> summary.images, summary.faces  # doctest: +SKIP
(1200, 1377)
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from faceattr.errors import CheckpointError, ConfigError, DatasetError
from faceattr.files import remove_stale_temporaries, write_exclusive
from faceattr.image import find_images
from faceattr.inference.results import CSV_COLUMNS, ImageResult, csv_cells, face_rows, printable, spreadsheet_safe
from faceattr.version import __version__

logger = logging.getLogger(__name__)

#: What to install for bulk prediction and the Ray Serve service.
RAY_EXTRA = 'pip install "faceattr[ray]"'

#: The columns of the output: the results CSV's, the present attributes and the error.
BULK_COLUMNS: tuple[str, ...] = (*CSV_COLUMNS, "attributes", "error")

#: The file that marks a folder as a bulk output and records what wrote it. Its leading ``_``
#: makes ``pyarrow.dataset`` (and pandas through it) leave it out of the table.
MARKER = "_faceattr_bulk.json"

#: The output tables by suffix.
TABLE_FORMATS: tuple[str, ...] = ("parquet", "csv")

#: Part files: ``part-00000.parquet``, ``part-00001.parquet``...
_PART = re.compile(r"part-(\d{5,})\.(parquet|csv)")

#: Images (not rows) per part file by default: a resumed run loses at most this many images' work.
PART_IMAGES = 500


@dataclass(frozen=True)
class BulkSummary:
    """What one :func:`predict_collection` run did.

    Attributes:
        output: The output folder.
        images: Photos predicted in this run.
        skipped: Photos already in the output from an earlier run, not predicted again.
        faces: Faces found in this run.
        errors: Photos of this run that could not be read (rows with ``error``).
        parts: Part files written in this run.
    """

    output: Path
    images: int
    skipped: int
    faces: int
    errors: int
    parts: int


def bulk_rows(result: ImageResult) -> list[dict[str, Any]]:
    """The output rows of one photo: one per face, else one with empty face columns (and ``error`` if unreadable).

    >>> [(row["path"], row["face"], row["error"]) for row in bulk_rows(ImageResult("a.jpg", [], "a.jpg: bad"))]
    [('a.jpg', None, 'a.jpg: bad')]
    """
    result = replace(result, source=printable(result.source),
                     error=None if result.error is None else printable(result.error))
    rows = [row | {"attributes": list(face.attributes), "error": None}
            for row, face in zip(face_rows(result), result.faces)]
    return rows or [dict.fromkeys(BULK_COLUMNS) | {"path": result.source, "error": result.error}]


def _arrow_schema() -> Any:
    """The output's Arrow schema: every part has it, whatever its rows hold (all-empty columns too)."""
    import pyarrow as pa

    types = {"path": pa.string(), "face": pa.int32(), "decision": pa.string(), "attributes": pa.list_(pa.string()),
             "error": pa.string()}
    return pa.schema([(column, types.get(column, pa.bool_() if column.endswith("_present") else pa.float64()))
                      for column in BULK_COLUMNS])


def read_inputs(inputs: str | Path, column: str = "path", exclude: tuple[Path, ...] = ()) -> list[tuple[str, Path]]:
    """The photos named by ``inputs``: each as written (the output's ``path``) and the file to read.

    Args:
        inputs: A folder (searched recursively, :func:`~faceattr.image.find_images`), a ``.parquet``
            file with a column of paths, or a text file of paths, one a line (blank lines
            skipped). Relative paths in a file are relative to that file's folder.
        column: The Parquet file's column of paths.
        exclude: Folders left out of a folder's search (the output).

    Returns:
        ``(path as written, absolute file)`` for each photo, in order, each path once.

    Raises:
        DatasetError: ``inputs`` does not exist, the column is missing, or an entry is empty or
            names no file (the message names the file and the line or row).

    >>> read_inputs("no/such/folder")
    Traceback (most recent call last):
    ...
    faceattr.errors.DatasetError: no/such/folder: no such file or folder
    """
    inputs = Path(inputs)
    if inputs.is_dir():
        return [(str(path), path.absolute()) for path in find_images([inputs], exclude=exclude)[0]]
    if not inputs.is_file():
        raise DatasetError(f"{inputs}: no such file or folder")
    if inputs.suffix.lower() == ".parquet":
        entries, where = _parquet_column(inputs, column), f"row (column {column!r})"
    else:
        try:
            lines = inputs.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise DatasetError(f"{inputs}: cannot read the list of paths: {error}") from error
        entries, where = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()], "line"
    base = inputs.parent.absolute()
    photos: dict[str, Path] = {}
    bad = []
    for number, entry in entries:
        file = base / entry
        if not entry or not file.is_file():
            bad.append(f"{where} {number}: " + (f"{entry!r}: no such file" if entry else "empty"))
        else:
            photos.setdefault(entry, file)
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise DatasetError(f"{inputs}: " + "; ".join(bad[:3]) + more)
    if len(photos) < len(entries):  # a list of several sources may name a photo twice
        logger.info("%s: %d repeated paths taken once", inputs, len(entries) - len(photos))
    return list(photos.items())


def _parquet_column(path: Path, column: str) -> list[tuple[int, str]]:
    """The ``column`` of the Parquet file ``path`` as ``(row from 1, text)``; a null is ``""``."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        if column not in names:
            raise DatasetError(f"{path}: no column {column!r} (columns: {', '.join(names)}); choose one with column=")
        values = pq.read_table(path, columns=[column]).column(column).to_pylist()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read as Parquet: {error}") from error
    return [(row, "" if value is None else str(value)) for row, value in enumerate(values, start=1)]


class _BatchPredictor:
    """One :class:`~faceattr.inference.predictor.Predictor` per Ray actor: a batch of photos to output rows."""

    def __init__(self, model: str | None, decision: str | None, batch_size: int):
        from faceattr.inference.predictor import Predictor

        self.predictor = Predictor(model, batch_size=batch_size, decision=decision)

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        import pyarrow as pa

        results = self.predictor.predict_many([str(file) for file in batch["file"]])
        rows = [row for path, result in zip(batch["path"], results)
                for row in bulk_rows(replace(result, source=str(path)))]
        return pa.Table.from_pylist(rows, schema=_arrow_schema())


class _BulkOutput:
    """The output folder: its marker, the photos its parts hold, and new parts written whole."""

    def __init__(self, folder: Path, settings: dict[str, Any]):
        self.folder, self.table = folder, settings["table"]
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"output {folder}: exists and is not a faceattr bulk output folder; "
                              "choose another output")
        marker = folder / MARKER
        if marker.is_file():
            self._check_marker(marker, settings)
        elif folder.is_dir() and any(folder.iterdir()):
            raise ConfigError(f"output {folder}: exists and is not a faceattr bulk output (no {MARKER}); "
                              "choose another output")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            write_exclusive(marker, lambda file: file.write((json.dumps(settings, indent=2) + "\n").encode()))
        self.parts = sorted(path for path in folder.iterdir() if _PART.fullmatch(path.name))
        self.next_index = 1 + max((int(_PART.fullmatch(p.name)[1]) for p in self.parts), default=-1)
        # A run killed while writing a part leaves its temporary file: the name the next part takes.
        remove_stale_temporaries(folder, [self._part_name(self.next_index)])

    @staticmethod
    def _check_marker(marker: Path, settings: dict[str, Any]) -> None:
        try:
            written = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigError(f"{marker}: unreadable ({error}); choose another output") from error
        for key in ("table", "model", "decision"):
            if written.get(key) != settings[key]:
                raise ConfigError(f"{marker}: {key} is {written.get(key)!r}, this run's is {settings[key]!r}: "
                                  "resuming would mix two runs' results; choose another output")

    def _part_name(self, index: int) -> str:
        return f"part-{index:05d}.{self.table}"

    def done_paths(self) -> set[str]:
        """The ``path`` of every row in the parts (as the table holds it)."""
        done: set[str] = set()
        for part in self.parts:
            if self.table == "parquet":
                import pyarrow.parquet as pq

                done.update(pq.read_table(part, columns=["path"]).column("path").to_pylist())
            else:
                with part.open(encoding="utf-8", newline="") as file:
                    done.update(row["path"] for row in csv.DictReader(file))
        return done

    def table_path(self, path: str) -> str:
        """``path`` as the table holds it (see :meth:`done_paths`)."""
        path = printable(path)
        return spreadsheet_safe(path) if self.table == "csv" else path

    def write(self, table: Any) -> Path:
        """Writes the Arrow ``table`` as the next part file, whole."""
        part = self.folder / self._part_name(self.next_index)
        self.next_index += 1
        if self.table == "parquet":
            import pyarrow.parquet as pq

            write_exclusive(part, lambda file: pq.write_table(table, file))
        else:
            write_exclusive(part, lambda file: _write_csv(table.to_pylist(), file))
        return part


def _write_csv(rows: list[dict[str, Any]], file: Any) -> None:
    """The output rows as CSV with a header: the results CSV's cells, attributes space-separated, the error."""
    text = io.TextIOWrapper(file, encoding="utf-8", newline="")
    writer = csv.writer(text)
    writer.writerow(BULK_COLUMNS)
    for row in rows:
        cells = [*csv_cells(row), " ".join(row["attributes"] or ()), row["error"] or ""]
        writer.writerow([spreadsheet_safe(cell) for cell in cells])
    text.detach()  # flushed into ``file``, which write_exclusive syncs and puts in place


def _connect(ray_address: str | None, num_workers: int) -> bool:
    """Starts a local Ray (``None``) or joins the cluster at ``ray_address``, unless Ray already runs here;
    whether this call started it (and so shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    if ray_address is None:
        ray.init(num_cpus=num_workers, include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=ray_address, logging_level=logging.WARNING)
    return True


def _check_model(model: str | Path | None, decision: str | None) -> str | None:
    """The model file as an absolute path (``None``: the default model); refuses a missing file or a
    decision policy the model lacks here, before any worker starts."""
    from faceattr.evaluation.decision import policy_thresholds
    from faceattr.models.deployed import DeployedModel

    if model is not None and not Path(model).is_file():
        raise CheckpointError(f"{model}: model file not found")
    deployed = DeployedModel.load(model)
    policy_thresholds(decision or deployed.default_decision, deployed.fitted_thresholds())
    return None if model is None else str(Path(model).absolute())


def predict_collection(inputs: str | Path, output: str | Path, *, model: str | Path | None = None,
                       decision: str | None = None, batch_size: int = 16, num_workers: int = 2,
                       ray_address: str | None = None, column: str = "path",
                       part_images: int = PART_IMAGES) -> BulkSummary:
    """Predicts every photo of a collection with Ray Data and writes (or completes) a table of their faces.

    Args:
        inputs: A folder, a text file of paths or a Parquet file with a column of paths (see :func:`read_inputs`).
        output: ``OUT.parquet`` or ``OUT.csv``: a folder of part files (see the module's description),
            created, or completed where an earlier run with the same model and decision stopped.
        model: A ``best.pt`` or an exported ``.safetensors``; ``None``: the installed default model.
        decision: The decision policy (``balanced``, ``f1``, ``probability``); ``None``: the model's default.
        batch_size: Photos per batch sent to a worker, and faces per network batch there.
        num_workers: Ray actors, each with one predictor (one CPU each).
        ray_address: ``None`` starts a local Ray with ``num_workers`` CPUs (shut down when done);
            ``"auto"`` or an address joins a running cluster. Where Ray already runs in this
            process it is used as it is.
        column: The Parquet input's column of paths.
        part_images: Photos per part file (about: a photo's rows never span two parts).

    Returns:
        What this run did.

    Raises:
        ConfigError: ``output`` has another suffix, exists and is not a bulk output, or was written
            with another model or decision; a bad ``batch_size``, ``num_workers`` or ``decision``.
        DatasetError: ``inputs`` is missing, or a list entry or Parquet row is empty or names no file.
        CheckpointError: The model file is missing or unusable.
        ImportError: Ray is not installed (the message names the extra).
    """
    output = Path(output)
    table = output.suffix.lower().lstrip(".")
    if table not in TABLE_FORMATS:
        raise ConfigError(f"output {output}: must end in .parquet or .csv")
    for name, value in (("batch_size", batch_size), ("num_workers", num_workers), ("part_images", part_images)):
        if value < 1:
            raise ConfigError(f"{name}: must be at least 1, got {value}")
    try:
        import ray.data
    except ImportError as error:
        raise ImportError(f"bulk prediction needs Ray: {RAY_EXTRA}") from error
    model_file = _check_model(model, decision)
    photos = read_inputs(inputs, column, exclude=(output,))
    settings = {"format": "faceattr bulk output", "faceattr": __version__, "table": table, "model": model_file,
                "decision": decision, "columns": list(BULK_COLUMNS)}
    out = _BulkOutput(output, settings)
    done = out.done_paths()
    todo = [(path, file) for path, file in photos if out.table_path(path) not in done]
    logger.info("%s: %d photos, %d already done", inputs, len(photos), len(photos) - len(todo))
    images = faces = errors = parts = 0
    if todo:
        started = _connect(ray_address, num_workers)
        try:
            items = [{"path": path, "file": str(file)} for path, file in todo]
            dataset = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / batch_size))
            rows = dataset.map_batches(
                _BatchPredictor, fn_constructor_kwargs={"model": model_file, "decision": decision,
                                                        "batch_size": batch_size},
                batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=num_workers),
                num_cpus=1)
            for written in _parts(rows.iter_batches(batch_size=None, batch_format="pyarrow"), part_images):
                out.write(written)
                images += len(set(written.column("path").to_pylist()))
                faces += written.num_rows - written.column("face").null_count
                errors += written.num_rows - written.column("error").null_count
                parts += 1
        finally:
            if started:
                ray.shutdown()
    return BulkSummary(output, images, len(photos) - len(todo), faces, errors, parts)


def _parts(blocks: Any, part_images: int) -> Any:
    """Arrow tables of whole photos, about ``part_images`` each, from a stream of row blocks.

    Each photo's rows come together in one block; the last photo of what is gathered is held
    back until the next block, so that even a block cut in the middle of a photo never leaves
    its rows in two parts (a resumed run would take it as done).
    """
    import pyarrow as pa

    gathered = None
    for block in blocks:
        gathered = block if gathered is None else pa.concat_tables([gathered, block])
        paths = gathered.column("path").to_pylist()
        if len(set(paths)) > part_images:
            last = paths.index(paths[-1])
            yield gathered.slice(0, last)
            gathered = gathered.slice(last)
    if gathered is not None and gathered.num_rows:
        yield gathered
