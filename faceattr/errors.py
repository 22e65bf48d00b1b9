"""faceattr's own exceptions: each names the file, line or key at fault."""

from __future__ import annotations

from pathlib import Path


class FaceAttrError(Exception):
    """Base class of every error faceattr raises on purpose."""


class ConfigError(FaceAttrError, ValueError):
    """A configuration key, value or override is wrong; the message names the key."""


class DatasetError(FaceAttrError, ValueError):
    """A dataset file is missing or malformed; the message names the file and line.

    Args:
        message: What is wrong.
        path: The file at fault.
        line: 1-based line number in ``path``, when the fault is on one line.

    >>> str(DatasetError("expected 41 fields, got 3", "list_attr_celeba.txt", 7))
    'list_attr_celeba.txt, line 7: expected 41 fields, got 3'
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else Path(path)
        self.line = line
        where = "" if path is None else str(path) + ("" if line is None else f", line {line}")
        super().__init__(f"{where}: {message}" if where else message)


class ImageError(FaceAttrError, OSError):
    """An image cannot be read or decoded; the message names the input."""


class CheckpointError(FaceAttrError, ValueError):
    """A checkpoint or weights file is missing, corrupt or incompatible."""


class EvaluationError(FaceAttrError, ValueError):
    """An evaluation result is malformed or incomplete; the message names the key."""


class AlignmentError(FaceAttrError, ValueError):
    """Landmarks or an image that alignment cannot use; the message names the input."""


class DetectorError(FaceAttrError, RuntimeError):
    """A face detector cannot be set up: its library or model file (an OpenCV cascade) is missing."""
