"""Reads one configured data source with the reader of its kind."""

from __future__ import annotations

from collections.abc import Callable

from faceattr.config import SourceConfig
from faceattr.data.readers import celeba, celebahq, csvfile, scut
from faceattr.data.records import ReadResult
from faceattr.errors import ConfigError

#: Each kind's reader, called with the source's settings and the bad-row policy.
READERS: dict[str, Callable[[SourceConfig, str], ReadResult]] = {
    "celeba": lambda source, on_bad_row: celeba.read_celeba(source.root, source.images, on_bad_row),
    "celebahq": lambda source, on_bad_row: celebahq.read_celebahq(source.root, source.celeba_root, source.images,
                                                                   on_bad_row),
    "scut": lambda source, on_bad_row: scut.read_scut(source.root, source.folds, source.fold, images=source.images,
                                                      on_bad_row=on_bad_row),
    "csv": lambda source, on_bad_row: csvfile.read_csv(source.root, source.val_fraction, on_bad_row,
                                                         source.images, source.folds, source.fold),
}

#: The folder layout each kind expects, for error messages and ``tools/check_dataset.py``.
LAYOUTS: dict[str, str] = {
    "celeba": celeba.LAYOUT,
    "celebahq": celebahq.LAYOUT,
    "scut": scut.LAYOUT,
    "csv": csvfile.LAYOUT,
}


def read_source(source: SourceConfig, on_bad_row: str = "error") -> ReadResult:
    """Reads the dataset that ``source`` describes.

    Args:
        source: Kind, root and the kind's own settings (``images``, ``celeba_root``,
            ``folds``/``fold``, ``val_fraction``).
        on_bad_row: ``"error"`` or ``"skip"`` (count in ``bad_rows``, log a warning).

    Returns:
        What the kind's reader found.

    Raises:
        ConfigError: On an unknown kind or an empty root.
        DatasetError: When the dataset's files are missing or malformed.

    >>> import tempfile
    >>> from faceattr.synthetic.fixtures import make_scut
    >>> root = make_scut(tempfile.mkdtemp(), count=10)
    >>> read_source(SourceConfig(kind="scut", root=str(root))).source
    'scut'
    """
    if source.kind not in READERS:
        raise ConfigError(f"data source kind {source.kind!r} is not one of {', '.join(READERS)}")
    if not source.root:
        raise ConfigError(f"data source of kind {source.kind!r} has no root: set it to the dataset's "
                          f"{'CSV file' if source.kind == 'csv' else 'folder'}")
    return READERS[source.kind](source, on_bad_row)
