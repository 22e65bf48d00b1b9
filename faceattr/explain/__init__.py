"""The trained network as an instrument: what it looks at, and what its activations say.

- :mod:`~faceattr.explain.gradcam`: Grad-CAM maps for any attribute or the beauty head.
- :mod:`~faceattr.explain.maps`: those maps for every face of a photo, over its aligned crop and the photo
  (``faceattr.explain(photo, attribute=...)`` calls :func:`~faceattr.explain.maps.explain`).
- :mod:`~faceattr.explain.sanity`: whether the maps mean something: the share of a located attribute's map
  in its region of the face, and the maps of randomised networks (docs/EXPLAIN.md).
- :mod:`~faceattr.explain.sparsity`: activation-sparsity measures per layer, their curve over
  depth, and the cross-validated ridge regression that relates them to ratings.
"""

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    """This package, callable: ``faceattr.explain(...)`` is :func:`faceattr.explain.maps.explain`.

    ``faceattr.explain`` names this package once any of its modules is imported, so the public
    function cannot be a separate attribute of ``faceattr``; calling the package is the way both
    ``faceattr.explain(photo)`` and ``faceattr.explain.gradcam`` keep working. The maps module (and
    torch) is imported on the first call only.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from faceattr.explain.maps import explain

        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
