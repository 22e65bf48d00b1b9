"""faceattr: multi-task facial attribute recognition (40 CelebA attributes and a beauty score)."""

from faceattr.attributes import ATTRIBUTES
from faceattr.version import __version__

__all__ = ["ATTRIBUTES", "__version__"]
