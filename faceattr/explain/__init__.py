"""The trained network as an instrument: what it looks at, and what its activations say.

- :mod:`~faceattr.explain.gradcam`: Grad-CAM maps for any attribute or the beauty head.
- :mod:`~faceattr.explain.sparsity`: activation-sparsity measures per layer, their curve over
  depth, and the cross-validated ridge regression that relates them to ratings.
"""
