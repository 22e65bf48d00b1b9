"""CelebA's aligned-crop geometry: the frame every model's input is cut from, and the usual cut.

A base module (constants only, no imports) so that models, data and inference share one
definition: a deployed model records the crop it was trained on (:mod:`faceattr.models.deployed`),
and alignment (:mod:`faceattr.inference.align`) warps faces onto the same frame.

>>> CELEBA_SIZE, CELEBA_CROP[0]
((178, 218), 0.051)
"""

from __future__ import annotations

#: ``(width, height)`` of CelebA's official aligned crops (img_align_celeba).
CELEBA_SIZE: tuple[int, int] = (178, 218)

#: The square the training configs cut from an aligned crop (fractions left, top, right,
#: bottom; x 9-168, y 36-195 of 178x218), as in ``configs/base_shared_data.yaml``; the crop of
#: every model that predates recording its own.
CELEBA_CROP: tuple[float, float, float, float] = (0.051, 0.1665, 0.942, 0.894)
