"""Activation sparsity per layer, its curve over depth, and the ridge regression that relates it to ratings.

The design follows Dibot et al., "Sparsity in an artificial neural network predicts beauty: towards a
model of processing-based aesthetics", PLOS Computational Biology 2023 (doi 10.1371/journal.pcbi.1011703):
several sparsity measures per layer and image, each image's sparsity-over-depth curve summarised by a
few numbers, the mean activation as a control, and ridge regression with repeated k-fold
cross-validation predicting the ratings. :class:`LayerStatistics` measures a model's blocks batch by batch
through forward hooks, keeping the per-image values and never the activations.

Conventions shared by every measure in :data:`SPARSITY_MEASURES`:

- The input is a batch of activations, a numpy array or a torch tensor, ``(N, C, H, W)`` or ``(N, D)``
  (any ``(N, ...)``); the output is one float64 value per image, shape ``(N,)``. Each image's values
  are flattened into one vector of ``n`` units (except :func:`gini_per_channel`).
- The activations are meant to be taken after a ReLU (non-negative), as in the paper; the measures
  use absolute values where the sign would matter, so signed activations are measured by magnitude.
- Larger means sparser for every sparsity measure (:func:`mean_activation` is the control, not a
  sparsity measure: larger means more active).
- A constant image (every unit equal, the all-zero image included) has no sparsity structure: the
  scale-free measures (:func:`gini`, :func:`gini_per_channel`, :func:`l1`, :func:`kurtosis`,
  :func:`hoyer`, :func:`treves_rolls`) give exactly 0 for it, never NaN. :func:`l0` counts zeros, so
  it gives 1 for the all-zero image.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from faceattr.errors import ConfigError

Array = Any  # a numpy array or a torch tensor

#: The default ridge penalties searched by :func:`cross_validated_r2` (RidgeCV's efficient leave-one-out).
RIDGE_ALPHAS: tuple[float, ...] = tuple(float(alpha) for alpha in np.logspace(-3, 6, 19))


def _to_numpy(activations: Array) -> np.ndarray:
    """A float64 numpy copy of a numpy array or torch tensor (detached, on the CPU)."""
    if hasattr(activations, "detach"):  # a torch tensor; torch is not imported for numpy callers
        activations = activations.detach().to("cpu").double().numpy()
    return np.asarray(activations, dtype=np.float64)


def _per_image(activations: Array) -> np.ndarray:
    """The activations as ``(N, n)``: one row of ``n`` units per image.

    Raises:
        ConfigError: When the batch is not at least 2-D, is empty, or holds NaN or infinity.
    """
    values = _to_numpy(activations)
    if values.ndim < 2 or values.shape[0] == 0 or values[0].size == 0:
        raise ConfigError(f"activations must be a non-empty batch (N, ...) of at least 2 dimensions, "
                          f"got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ConfigError(f"activations of shape {values.shape} hold NaN or infinite values")
    return values.reshape(values.shape[0], -1)


def _is_constant(rows: np.ndarray) -> np.ndarray:
    """Which rows have every unit equal (exactly): their ratio measures are 0 by convention."""
    return rows.max(axis=1) == rows.min(axis=1)


def _gini_rows(rows: np.ndarray) -> np.ndarray:
    """The Gini index (Hurley & Rickard 2009) of each row's magnitudes; 0 for constant rows."""
    magnitudes = np.sort(np.abs(rows), axis=1)
    n = magnitudes.shape[1]
    totals = magnitudes.sum(axis=1)
    # Weight of the k-th smallest magnitude (k = 1..n): (n - k + 1/2) / n.
    weights = (n - np.arange(1, n + 1) + 0.5) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        index = 1.0 - 2.0 * (magnitudes @ weights) / totals
    return np.where(_is_constant(magnitudes), 0.0, index)


def gini(activations: Array) -> np.ndarray:
    """The Gini index of each image's flattened activation magnitudes.

    ``G = 1 - 2 * sum_k (c_k / ||c||_1) * (n - k + 1/2) / n`` over the magnitudes ``c`` sorted
    ascending (Hurley & Rickard 2009). 0 when all units are equal, ``1 - 1/n`` when one unit holds
    everything (its maximum for ``n`` units); 0 for the all-zero image.

    Args:
        activations: ``(N, ...)`` activations.

    Returns:
        ``(N,)`` values in ``[0, 1 - 1/n]``, larger is sparser.
    """
    return _gini_rows(_per_image(activations))


def gini_per_channel(activations: Array) -> np.ndarray:
    """The Gini index over each channel's spatial positions, averaged over the channels.

    It asks how concentrated each feature map is in space (a channel that fires in one place is sparse),
    where :func:`gini` also counts channels that are silent everywhere. Constant channels (an all-zero
    one included) count as 0.

    Args:
        activations: ``(N, C, H, W)`` activations (any ``(N, C, ...)`` with spatial positions after ``C``).

    Returns:
        ``(N,)`` values in ``[0, 1 - 1/(H*W)]``, larger is sparser.

    Raises:
        ConfigError: For ``(N, D)`` activations (pooled features have no spatial positions) or empty maps.
    """
    values = _to_numpy(activations)
    if values.ndim < 3:
        raise ConfigError(f"gini_per_channel needs (N, C, H, W) activations with spatial positions, "
                          f"got shape {values.shape}")
    rows = _per_image(values).reshape(values.shape[0] * values.shape[1], -1)
    return _gini_rows(rows).reshape(values.shape[0], values.shape[1]).mean(axis=1)


def l0(activations: Array, epsilon: float = 0.0) -> np.ndarray:
    """The share of silent units: those whose magnitude is at most ``epsilon``.

    With the default ``epsilon=0`` a unit counts only when it is exactly zero, which is what a ReLU
    gives; pass a small ``epsilon`` for activations taken before the ReLU or after a smooth activation.

    Args:
        activations: ``(N, ...)`` activations.
        epsilon: The largest magnitude still counted as silent (``>= 0``).

    Returns:
        ``(N,)`` shares in ``[0, 1]``, larger is sparser; 1 for the all-zero image.

    Raises:
        ConfigError: For a negative ``epsilon``.
    """
    if not epsilon >= 0:
        raise ConfigError(f"epsilon must be >= 0, got {epsilon}")
    return (np.abs(_per_image(activations)) <= epsilon).mean(axis=1)


def l1(activations: Array) -> np.ndarray:
    """One minus the mean magnitude relative to the peak: ``1 - mean|a| / max|a|``.

    The raw L1 norm ``mean|a|`` is, for post-ReLU activations, the mean activation, which the paper
    keeps apart as the control (:func:`mean_activation`); dividing by the peak makes it scale-free,
    so it measures how the activity is spread, and subtracting from 1 makes larger mean sparser.

    Args:
        activations: ``(N, ...)`` activations.

    Returns:
        ``(N,)`` values in ``[0, 1 - 1/n]``: 0 for equal units (and the all-zero image), ``1 - 1/n``
        for one active unit.
    """
    magnitudes = np.abs(_per_image(activations))
    peaks = magnitudes.max(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = 1.0 - magnitudes.mean(axis=1) / peaks
    return np.where(_is_constant(magnitudes), 0.0, values)


def kurtosis(activations: Array) -> np.ndarray:
    """The excess kurtosis of each image's flattened activations.

    scipy's default convention (``scipy.stats.kurtosis(..., fisher=True, bias=True)``): the fourth
    central moment over the squared variance, minus 3, so a normal distribution gives 0. A few large
    values among many small ones give a heavy tail and a large kurtosis. The signed values are used
    (for post-ReLU activations they are the magnitudes).

    Args:
        activations: ``(N, ...)`` activations.

    Returns:
        ``(N,)`` values (at least -2), larger is sparser; 0 for a constant image, where scipy gives NaN.
    """
    rows = _per_image(activations)
    centred = rows - rows.mean(axis=1, keepdims=True)
    variance = (centred**2).mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (centred**4).mean(axis=1) / variance**2 - 3.0
    return np.where(_is_constant(rows), 0.0, values)


def hoyer(activations: Array) -> np.ndarray:
    """Hoyer's sparseness (2004): ``(sqrt(n) - ||a||_1 / ||a||_2) / (sqrt(n) - 1)``.

    Args:
        activations: ``(N, ...)`` activations.

    Returns:
        ``(N,)`` values in ``[0, 1]``: 0 for equal units (and the all-zero image, and single-unit
        images), 1 for one active unit; larger is sparser.
    """
    rows = _per_image(activations)
    n = rows.shape[1]
    if n == 1:
        return np.zeros(rows.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.abs(rows).sum(axis=1) / np.sqrt((rows**2).sum(axis=1))
    values = (np.sqrt(n) - ratio) / (np.sqrt(n) - 1.0)
    return np.where(_is_constant(np.abs(rows)), 0.0, values)


def treves_rolls(activations: Array) -> np.ndarray:
    """Treves-Rolls sparseness in its "one minus activity" form: ``1 - (mean|a|)^2 / mean(a^2)``.

    Treves & Rolls (1991) define the population activity ``(mean a)^2 / mean(a^2)``, which is large for
    dense codes; one minus it (the form of Vinje & Gallant 2000 without their ``1 - 1/n`` rescaling)
    makes larger mean sparser, like the other measures.

    Args:
        activations: ``(N, ...)`` activations.

    Returns:
        ``(N,)`` values in ``[0, 1 - 1/n]``: 0 for equal units (and the all-zero image), ``1 - 1/n`` for
        one active unit.
    """
    magnitudes = np.abs(_per_image(activations))
    with np.errstate(invalid="ignore", divide="ignore"):
        values = 1.0 - magnitudes.mean(axis=1) ** 2 / (magnitudes**2).mean(axis=1)
    return np.where(_is_constant(magnitudes), 0.0, values)


def mean_activation(activations: Array) -> np.ndarray:
    """The mean (signed) activation of each image: the control the paper sets beside sparsity.

    Args:
        activations: ``(N, ...)`` activations.

    Returns:
        ``(N,)`` means; larger is more active (not a sparsity measure).
    """
    return _per_image(activations).mean(axis=1)


#: Every measure by name, each ``activations (N, ...) -> (N,)``; ``gini_per_channel`` needs spatial maps.
SPARSITY_MEASURES: dict[str, Callable[[Array], np.ndarray]] = {
    "gini": gini,
    "gini_per_channel": gini_per_channel,
    "l0": l0,
    "l1": l1,
    "kurtosis": kurtosis,
    "hoyer": hoyer,
    "treves_rolls": treves_rolls,
    "mean_activation": mean_activation,
}


def logistic(depth: np.ndarray, base: float, amplitude: float, steepness: float, inflexion: float) -> np.ndarray:
    """The logistic curve fitted over depth: ``base + amplitude / (1 + exp(-steepness * (depth - inflexion)))``.

    Args:
        depth: Normalised depths (0 = first layer, 1 = last).
        base: The value far before the inflexion.
        amplitude: The rise from ``base`` to the value far after it (negative for a falling curve).
        steepness: The rate (``>= 0``); the slope at the inflexion is ``amplitude * steepness / 4``.
        inflexion: The depth of the inflexion point.

    Returns:
        The curve at ``depth``.
    """
    return base + amplitude / (1.0 + np.exp(-steepness * (depth - inflexion)))


# Bounds of the logistic fit, on a curve rescaled to [0, 1]: (base, amplitude, steepness, inflexion).
_LOGISTIC_LOWER = np.array([-1.0, -3.0, 0.0, 0.0])
_LOGISTIC_UPPER = np.array([2.0, 3.0, 100.0, 1.0])
# The grid the fit starts from: steepness (log-spaced) by inflexion depth.
_GRID_STEEPNESS, _GRID_INFLEXION = np.meshgrid(np.geomspace(0.5, 100.0, 40), np.linspace(0.0, 1.0, 101))


def _grid_start(depth: np.ndarray, scaled: np.ndarray) -> np.ndarray:
    """The best logistic on a (steepness, inflexion) grid, base and amplitude solved by least squares.

    For a fixed steepness and inflexion the logistic is linear in base and amplitude, so every grid
    point is a closed-form fit; the best one is the start of :func:`curve_fit`, which then only
    refines (a start far from the optimum makes it wander up to its evaluation limit).
    """
    sigmoids = 1.0 / (1.0 + np.exp(-_GRID_STEEPNESS.ravel()[:, None] * (depth - _GRID_INFLEXION.ravel()[:, None])))
    centred = sigmoids - sigmoids.mean(axis=1, keepdims=True)
    variance = (centred**2).sum(axis=1)
    covariance = centred @ (scaled - scaled.mean())
    with np.errstate(invalid="ignore", divide="ignore"):
        explained = np.where(variance > 1e-12, covariance**2 / variance, -np.inf)
    best = int(np.argmax(explained))
    amplitude = covariance[best] / variance[best]
    base = scaled.mean() - amplitude * sigmoids[best].mean()
    start = np.array([base, amplitude, _GRID_STEEPNESS.ravel()[best], _GRID_INFLEXION.ravel()[best]])
    return np.clip(start, _LOGISTIC_LOWER, _LOGISTIC_UPPER)


def _fit_logistic(depth: np.ndarray, curve: np.ndarray) -> tuple[float, float, float] | None:
    """Fits :func:`logistic` to one curve; ``(slope at the inflexion, steepness, inflexion)`` or None on failure.

    The curve is rescaled to [0, 1] first so that one set of bounds fits curves of any scale; the fit
    starts from the best point of a grid (:func:`_grid_start`), and the grid point stands when
    ``curve_fit`` fails to refine it.
    """
    low, spread = curve.min(), np.ptp(curve)
    if not np.isfinite(curve).all() or spread == 0 or len(curve) < 4:
        return None  # a flat curve has no inflexion; fewer points than parameters fit anything
    scaled = (curve - low) / spread
    params = _grid_start(depth, scaled)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            refined, _ = curve_fit(logistic, depth, scaled, p0=params, bounds=(_LOGISTIC_LOWER, _LOGISTIC_UPPER),
                                   maxfev=400)
        if ((logistic(depth, *refined) - scaled) ** 2).sum() <= ((logistic(depth, *params) - scaled) ** 2).sum():
            params = refined
    except (RuntimeError, ValueError):
        pass  # the grid's fit stands
    _, amplitude, steepness, inflexion = params
    if not np.isfinite(params).all():
        return None
    return float(amplitude * spread * steepness / 4.0), float(steepness), float(inflexion)


def depth_curve_summary(values: Array) -> dict[str, np.ndarray]:
    """Summarises each image's sparsity-over-depth curve, the depth of its ``L`` layers normalised to 0-1.

    Args:
        values: ``(N, L)`` one sparsity measure per image and layer, layers in forward order (``L >= 2``).

    Returns:
        ``(N,)`` arrays by name:

        - ``linear_slope``: the slope of a least-squares line over depth (value per unit depth).
        - ``range``: the largest minus the smallest value over the layers.
        - ``acceleration``: the second derivative of a least-squares parabola over depth (twice its
          quadratic coefficient): positive when sparsity rises faster in the deep layers; NaN for
          ``L < 3``.
        - ``logistic_slope``: the slope at the inflexion of a fitted :func:`logistic` (value per unit
          depth, negative for falling curves); ``logistic_steepness``: its rate parameter;
          ``logistic_inflexion``: the depth (0-1) of its inflexion point.
        - ``logistic_failed``: True where the logistic fit failed or is undefined (flat curves,
          ``L < 4``, non-finite values); the three logistic values are NaN there. The fit never raises:
          ``logistic_failed.sum()`` is the count to report.

    Raises:
        ConfigError: When ``values`` is not ``(N, L)`` with ``L >= 2``.
    """
    curves = _to_numpy(values)
    if curves.ndim != 2 or curves.shape[1] < 2:
        raise ConfigError(f"values must be (N images, L >= 2 layers), got shape {curves.shape}")
    count, layers = curves.shape
    depth = np.linspace(0.0, 1.0, layers)
    summary = {"linear_slope": np.full(count, np.nan), "range": np.ptp(curves, axis=1),
               "acceleration": np.full(count, np.nan)}
    finite = np.isfinite(curves).all(axis=1)
    if finite.any():
        summary["linear_slope"][finite] = np.polyfit(depth, curves[finite].T, 1)[0]
        if layers >= 3:
            summary["acceleration"][finite] = 2.0 * np.polyfit(depth, curves[finite].T, 2)[0]
    fits = [_fit_logistic(depth, curve) for curve in curves]
    summary["logistic_failed"] = np.array([fit is None for fit in fits])
    for position, name in enumerate(("logistic_slope", "logistic_steepness", "logistic_inflexion")):
        summary[name] = np.array([np.nan if fit is None else fit[position] for fit in fits])
    return summary


def contextual(values: Array) -> np.ndarray:
    """Each value as a z-score against the population: per column, minus its mean, over its standard deviation.

    "Contextual" sparsity in the paper's sense: how sparse an image is relative to the other images.
    The standard deviation is the population one (``ddof=0``); NaN values are left out of the mean and
    deviation and stay NaN; a column whose values are all equal gives 0.

    Args:
        values: ``(N,)`` or ``(N, K)`` values, images in rows.

    Returns:
        The z-scores, the shape of ``values``.

    Raises:
        ConfigError: When ``values`` is not 1-D or 2-D, or is empty.
    """
    table = _to_numpy(values)
    if table.ndim not in (1, 2) or table.shape[0] == 0:
        raise ConfigError(f"values must be (N,) or (N, K) with N >= 1, got shape {table.shape}")
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN is the answer
        centre = np.nanmean(table, axis=0)
        spread = np.nanstd(table, axis=0)
        scores = (table - centre) / spread
    return np.where((spread == 0) & np.isfinite(table), 0.0, scores)


def cross_validated_r2(features: Array, ratings: Array, folds: int = 10, repeats: int = 10,
                       alphas: tuple[float, ...] | list[float] = RIDGE_ALPHAS, seed: int = 0) -> tuple[float, float]:
    """Out-of-fold R² of ridge regression predicting ratings from features, over repeated k-fold splits.

    Each repeat splits the images into ``folds`` folds (sklearn ``RepeatedKFold``); each fold is predicted
    by a pipeline fitted on the others: features standardised with the training fold's mean and
    deviation, then ``RidgeCV`` choosing its penalty from ``alphas`` by leave-one-out inside the
    training fold. The repeat's R² is computed once over all its out-of-fold predictions (not averaged
    per fold, which is biased down for small folds), so it can be negative when the features predict
    worse than the mean rating.

    Args:
        features: ``(N, F)`` features, one row per image.
        ratings: ``(N,)`` ratings.
        folds: Folds per repeat (2 to N).
        repeats: Repeats with different splits (>= 1).
        alphas: Ridge penalties to choose from (positive).
        seed: Seed of the splits; the result is a function of the inputs and the seed.

    Returns:
        ``(mean R², standard deviation of R²)`` over the repeats (population deviation; 0 for one repeat).

    Raises:
        ConfigError: For mismatched or non-finite inputs, or ``folds``, ``repeats`` or ``alphas`` out of range.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import RepeatedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    table, target = _to_numpy(features), _to_numpy(ratings)
    if table.ndim == 1:
        table = table[:, None]
    if table.ndim != 2 or target.ndim != 1 or table.shape[0] != target.shape[0]:
        raise ConfigError(f"features must be (N, F) and ratings (N,) with the same N, got {table.shape} and "
                          f"{target.shape}")
    if not (np.isfinite(table).all() and np.isfinite(target).all()):
        raise ConfigError("features and ratings must be finite (no NaN: drop or impute the images first)")
    if not 2 <= folds <= target.shape[0]:
        raise ConfigError(f"folds must be between 2 and the number of images ({target.shape[0]}), got {folds}")
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    if len(alphas) == 0 or min(alphas) <= 0:
        raise ConfigError(f"alphas must be a non-empty list of positive penalties, got {list(alphas)}")

    splits = list(RepeatedKFold(n_splits=folds, n_repeats=repeats, random_state=seed).split(table))
    scores = []
    for repeat in range(repeats):
        predicted = np.empty_like(target)
        for train, test in splits[repeat * folds:(repeat + 1) * folds]:
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.asarray(alphas, dtype=np.float64)))
            model.fit(table[train], target[train])
            predicted[test] = model.predict(table[test])
        scores.append(r2_score(target, predicted))
    return float(np.mean(scores)), float(np.std(scores))


def block_names(model: Any) -> list[str]:
    """The modules whose outputs :class:`LayerStatistics` measures by default: the backbone's blocks, in order.

    For a timm backbone (a :class:`~faceattr.models.net.FaceAttrNet`'s ``backbone`` or a timm model
    itself), the modules of its ``feature_info`` (the stem's output and each stage), each stage that
    is a sequence of blocks replaced by its blocks, so a deeper network gives a finer depth curve
    (ResNet-50: the stem and 16 blocks).

    Args:
        model: A FaceAttrNet or a timm model.

    Returns:
        Module names as ``model.get_submodule`` takes them.

    Raises:
        ConfigError: When the model has no timm ``feature_info`` to find its blocks by.
    """
    from torch import nn

    prefix, backbone = ("backbone.", model.backbone) if hasattr(model, "backbone") else ("", model)
    stages = [info.get("module") for info in getattr(backbone, "feature_info", None) or []]
    if not stages or None in stages:
        raise ConfigError(f"{type(backbone).__name__} has no timm feature_info naming its stages: "
                          f"pass the layer names to LayerStatistics")
    names = []
    for stage in stages:
        module = backbone.get_submodule(stage)
        if isinstance(module, nn.Sequential) and len(module) > 0:
            names.extend(f"{prefix}{stage}.{child}" for child, _ in module.named_children())
        else:
            names.append(f"{prefix}{stage}")
    return names


class LayerStatistics:
    """Sparsity measures of a model's intermediate activations, accumulated batch by batch.

    Forward hooks on the chosen modules measure each module's output as the batch passes and keep only
    the ``(batch,)`` values, so a dataset of any size is measured without holding its activations. Use
    it as a context manager (or call :meth:`close`) so the hooks are always removed.

    Args:
        model: The network (e.g. a :class:`~faceattr.models.net.FaceAttrNet`); it is run in eval mode
            without gradients by :meth:`update`.
        layers: Module names (``model.get_submodule`` form), in depth order; default :func:`block_names`.
        measures: Names from :data:`SPARSITY_MEASURES`; default all of them (``gini_per_channel`` is
            skipped, as NaN, for modules whose outputs have no spatial positions).

    Raises:
        ConfigError: For an unknown layer or measure name.

    >>> import torch
    >>> from faceattr.models.net import FaceAttrNet
    >>> with LayerStatistics(FaceAttrNet("resnet10t"), measures=["hoyer"]) as statistics:
    ...     statistics.update(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
    ...     statistics.values()["hoyer"].shape
    (2, 5)
    """

    def __init__(self, model: Any, layers: Sequence[str] | None = None, measures: Sequence[str] | None = None):
        self.model = model
        self.layers = list(block_names(model) if layers is None else layers)
        self.measures = list(SPARSITY_MEASURES if measures is None else measures)
        unknown = [name for name in self.measures if name not in SPARSITY_MEASURES]
        if unknown:
            raise ConfigError(f"unknown sparsity measures {unknown}; known: {sorted(SPARSITY_MEASURES)}")
        if not self.layers:
            raise ConfigError("layers must name at least one module")
        modules = []
        for name in self.layers:
            try:
                modules.append(model.get_submodule(name))
            except AttributeError as error:
                raise ConfigError(f"the model has no module {name!r} to measure") from error
        # The values of the batch in flight, by layer; filled by the hooks, drained by update().
        self._batch: dict[str, dict[str, np.ndarray]] = {}
        self._collected: dict[str, list[np.ndarray]] = {name: [] for name in self.measures}
        self._handles = [module.register_forward_hook(self._hook(name)) for name, module in zip(self.layers, modules)]

    def _hook(self, layer: str) -> Callable[..., None]:
        """The forward hook that measures ``layer``'s output (the first tensor, for modules returning tuples)."""

        def measure(module: Any, inputs: Any, output: Any) -> None:
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            activations = tensor.detach().cpu().double()
            self._batch[layer] = {
                name: (np.full(activations.shape[0], np.nan)
                       if name == "gini_per_channel" and activations.ndim < 3
                       else SPARSITY_MEASURES[name](activations))
                for name in self.measures}

        return measure

    def update(self, images: Any) -> None:
        """Runs one batch through the model and keeps its per-image values.

        Args:
            images: A batch the model takes (for FaceAttrNet, uint8 ``(B, 3, H, W)``).

        Raises:
            ConfigError: When a layer produced no output in this forward pass (it is not on the path).
        """
        import torch

        if not self._handles:
            raise ConfigError("LayerStatistics is closed: its hooks were removed")
        self._batch = {}
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                self.model(images)
        finally:
            self.model.train(was_training)
        missing = [name for name in self.layers if name not in self._batch]
        if missing:
            raise ConfigError(f"layers {missing} produced no output in the forward pass")
        for name in self.measures:
            self._collected[name].append(np.stack([self._batch[layer][name] for layer in self.layers], axis=1))
        self._batch = {}

    def values(self) -> dict[str, np.ndarray]:
        """The values so far: by measure, ``(images seen, layers)``, images in the order they were given."""
        return {name: (np.concatenate(parts) if parts else np.empty((0, len(self.layers))))
                for name, parts in self._collected.items()}

    def close(self) -> None:
        """Removes the hooks (the collected values stay readable)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> LayerStatistics:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

