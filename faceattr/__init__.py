"""faceattr: multi-task facial attribute recognition (40 CelebA attributes and a beauty score).

>>> import faceattr
>>> len(faceattr.ATTRIBUTES)
40
"""

from __future__ import annotations

import importlib
from typing import Any

from faceattr.attributes import ATTRIBUTES
from faceattr.version import __version__

__all__ = ["ATTRIBUTES", "FaceResult", "ImageResult", "Predictor", "__version__", "explain", "load_model", "predict"]

#: Exports imported on first use, so that ``import faceattr`` does not import torch.
_LAZY = {"predict": "faceattr.inference.predictor", "load_model": "faceattr.inference.predictor", "Predictor": "faceattr.inference.predictor",
         "FaceResult": "faceattr.inference.results", "ImageResult": "faceattr.inference.results"}


def __getattr__(name: str) -> Any:
    if name == "explain":  # the subpackage itself, callable as faceattr.explain.maps.explain
        return importlib.import_module("faceattr.explain")
    if name not in _LAZY:
        raise AttributeError(f"module 'faceattr' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
