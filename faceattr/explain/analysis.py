"""The sparsity analysis of a rated image set: Dibot et al. (2023)'s design run on a faceattr network.

:func:`analyze_sparsity` streams the images through the trained network and, in the same pass, an
untrained network of the same architecture (the comparison that asks whether training changes the link),
measures every block's activation sparsity with :class:`~faceattr.explain.sparsity.LayerStatistics`
(per-image values only, never the activations), and predicts the ratings from each feature family by
ridge regression with repeated k-fold cross-validation (:func:`~faceattr.explain.sparsity.cross_validated_r2`).
:func:`write_report` saves the Markdown table, its JSON figures and three plots.

The feature families, per network:

- ``MEASURE per layer``: one sparsity measure at every block (all layers together as features).
- ``all sparsity, per layer``: every sparsity measure at every block.
- ``MEASURE depth curve``: each image's curve of that measure over depth summarised
  (:func:`~faceattr.explain.sparsity.depth_curve_summary`: linear slope, range, acceleration, logistic
  slope and inflexion; a failed logistic fit is imputed with the population median).
- ``MEASURE contextual mean``: the image's z-score against the population, averaged over the layers
  (one number). Z-scoring each layer alone is an affine change of each feature, which standardised
  ridge regression undoes, so per-layer contextual values would repeat ``MEASURE per layer`` exactly.
- ``mean activation (control)``: the mean activation per layer alone, the paper's control.
- ``all sparsity + mean activation``: whether sparsity adds to the control.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceattr.errors import ConfigError
from faceattr.explain.sparsity import (
    SPARSITY_MEASURES,
    LayerStatistics,
    block_names,
    contextual,
    cross_validated_r2,
    depth_curve_summary,
)

#: The control measure: kept apart from the sparsity measures, as in the paper.
CONTROL = "mean_activation"
#: The depth-curve summary values used as features (``logistic_steepness`` repeats the slope's information).
CURVE_FEATURES: tuple[str, ...] = ("linear_slope", "range", "acceleration", "logistic_slope", "logistic_inflexion")
#: The measures whose depth curves are summarised by default (the logistic fit costs ~ms per image).
DEFAULT_CURVE_MEASURES: tuple[str, ...] = ("gini", "l0", "hoyer")


@dataclass
class NetworkAnalysis:
    """One network's measurements and regressions.

    Attributes:
        values: By measure, ``(N, L)`` per-image values at each layer.
        families: By feature family name, ``(mean R², standard deviation of R²)`` over the repeats.
        per_layer: By measure (those in ``per_layer_measures``), one ``(mean R², sd)`` per layer.
        logistic_failures: By measure whose curve was summarised, how many images' logistic fit failed.
        correlations: By measure, the Pearson correlation of each layer's values with the ratings (its sign
            says whether sparser means rated higher at that layer; NaN for a constant layer).
    """

    values: dict[str, np.ndarray]
    families: dict[str, tuple[float, float]] = field(default_factory=dict)
    per_layer: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    logistic_failures: dict[str, int] = field(default_factory=dict)
    correlations: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class SparsityAnalysis:
    """The result of :func:`analyze_sparsity`.

    Attributes:
        layers: The measured modules, in depth order.
        measures: The measures taken.
        ratings: ``(N,)`` the ratings, in the images' order.
        networks: By name (``"trained"``, and ``"untrained"`` when asked), the network's analysis.
        folds: Folds of the cross-validation; repeats: its repeats; seed: the seed of splits and init.
        seconds: Wall time of the whole analysis; measure_seconds: of the forward passes alone.
    """

    layers: list[str]
    measures: list[str]
    ratings: np.ndarray
    networks: dict[str, NetworkAnalysis]
    folds: int
    repeats: int
    seed: int
    seconds: float = 0.0
    measure_seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        """The figures as JSON-serialisable values (no per-image values)."""
        return {"layers": self.layers, "measures": self.measures, "images": int(len(self.ratings)),
                "folds": self.folds, "repeats": self.repeats, "seed": self.seed,
                "seconds": round(self.seconds, 1), "measure_seconds": round(self.measure_seconds, 1),
                "networks": {name: {"families": {family: {"r2": r2, "sd": sd}
                                                 for family, (r2, sd) in network.families.items()},
                                    "per_layer": {measure: [{"layer": layer, "r2": r2, "sd": sd}
                                                            for layer, (r2, sd) in zip(self.layers, scores)]
                                                  for measure, scores in network.per_layer.items()},
                                    "logistic_failures": network.logistic_failures,
                                    "correlations": {measure: dict(zip(self.layers, values))
                                                     for measure, values in network.correlations.items()}}
                             for name, network in self.networks.items()}}


def untrained_copy(model: Any, seed: int = 0) -> Any:
    """A network of ``model``'s architecture with fresh random weights (timm's initialisation), in eval mode.

    Args:
        model: A :class:`~faceattr.models.net.FaceAttrNet` (it has ``model_args``).
        seed: Seeds torch's generator before building, so the same seed gives the same weights.

    Returns:
        The untrained network.

    Raises:
        ConfigError: When ``model`` has no ``model_args`` to rebuild it from.
    """
    import torch

    if not hasattr(model, "model_args"):
        raise ConfigError(f"{type(model).__name__} has no model_args: pass a FaceAttrNet")
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return type(model)(**model.model_args).eval()
    finally:
        torch.random.set_rng_state(state)  # the caller's random stream is not disturbed


def measure_networks(networks: Mapping[str, Any], images: Sequence[str | Path], image_size: int,
                     crop: Sequence[float] | None, batch_size: int = 64, measures: Sequence[str] | None = None,
                     layers: Sequence[str] | None = None, workers: int = 2) -> dict[str, dict[str, np.ndarray]]:
    """Streams the images once through every network and returns each one's per-image, per-layer measures.

    Images are read as the evaluation transform reads them (:func:`~faceattr.data.transforms.eval_transform`
    on :func:`~faceattr.image.load_image`), a batch at a time, decoded by ``workers`` threads; each batch is
    fed to every network, so the decoding is paid once. Only the ``(batch,)`` measures are kept.

    Args:
        networks: Networks by name (FaceAttrNet or any module taking a uint8 ``(B, 3, S, S)`` batch).
        images: Image files.
        image_size: Side of the network input.
        crop: Fractional crop box cut before resizing (``None``: the whole image).
        batch_size: Images per forward pass.
        measures: Names from :data:`~faceattr.explain.sparsity.SPARSITY_MEASURES` (default all).
        layers: Module names (default :func:`~faceattr.explain.sparsity.block_names` of each network).
        workers: Threads decoding images.

    Returns:
        By network name, by measure, ``(N, L)`` values.

    Raises:
        ConfigError: For no images, a batch size below 1, or an unknown measure or layer.
        ImageError: For an unreadable image (the message names it).
    """
    import torch

    from faceattr.data.transforms import eval_transform
    from faceattr.image import load_image

    if not images:
        raise ConfigError("images is empty: nothing to measure")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    transform = eval_transform(image_size, crop)

    def read(path: str | Path) -> Any:
        return transform(load_image(path))

    statistics = {name: LayerStatistics(network, layers=layers, measures=measures)
                  for name, network in networks.items()}
    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for start in range(0, len(images), batch_size):
                batch = torch.stack(list(pool.map(read, images[start:start + batch_size])))
                for stats in statistics.values():
                    stats.update(batch)
    finally:
        for stats in statistics.values():
            stats.close()
    return {name: stats.values() for name, stats in statistics.items()}


def _impute_median(table: np.ndarray) -> np.ndarray:
    """NaN replaced by its column's median (0 for an all-NaN column), so every image stays in the regression."""
    table = table.copy()
    for column in range(table.shape[1]):
        missing = ~np.isfinite(table[:, column])
        if missing.any():
            finite = table[~missing, column]
            table[missing, column] = np.median(finite) if finite.size else 0.0
    return table


def _usable(table: np.ndarray) -> np.ndarray:
    """The columns of ``table`` that are finite somewhere (gini_per_channel is NaN for pooled layers)."""
    return table[:, np.isfinite(table).any(axis=0)]


def feature_families(values: Mapping[str, np.ndarray], curve_measures: Sequence[str] = DEFAULT_CURVE_MEASURES
                     ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The feature tables the ratings are regressed on, by family name (see the module docstring).

    Args:
        values: By measure, ``(N, L)`` per-image values (as :func:`measure_networks` gives).
        curve_measures: The measures whose depth curves are summarised (those present in ``values``).

    Returns:
        ``(N, F)`` finite tables by family, and the logistic-fit failures per summarised measure.
    """
    sparsity = [name for name in values if name != CONTROL]
    families: dict[str, np.ndarray] = {}
    failures: dict[str, int] = {}
    for name in sparsity:
        families[f"{name} per layer"] = _impute_median(_usable(values[name]))
    for name in sparsity:
        if name in curve_measures and values[name].shape[1] >= 2:
            summary = depth_curve_summary(_usable(values[name]))
            failures[name] = int(summary["logistic_failed"].sum())
            families[f"{name} depth curve"] = _impute_median(np.stack([summary[key] for key in CURVE_FEATURES], 1))
    for name in sparsity:
        families[f"{name} contextual mean"] = _impute_median(
            np.nanmean(contextual(_usable(values[name])), axis=1, keepdims=True))
    if sparsity:
        families["all sparsity, per layer"] = np.concatenate([families[f"{name} per layer"] for name in sparsity], 1)
    if CONTROL in values:
        families["mean activation (control)"] = _impute_median(values[CONTROL])
        if sparsity:
            families["all sparsity + mean activation"] = np.concatenate(
                [families["all sparsity, per layer"], families["mean activation (control)"]], 1)
    return families, failures


def _correlations(table: np.ndarray, ratings: np.ndarray) -> list[float]:
    """The Pearson correlation of each column with the ratings; NaN where a column is constant or NaN."""
    found = []
    for column in table.T:
        usable = np.isfinite(column)
        if usable.sum() < 2 or np.ptp(column[usable]) == 0:
            found.append(float("nan"))
        else:
            found.append(float(np.corrcoef(column[usable], ratings[usable])[0, 1]))
    return found


def regress_families(values: Mapping[str, np.ndarray], ratings: np.ndarray, folds: int = 10, repeats: int = 5,
                     seed: int = 0, per_layer_measures: Sequence[str] = ("gini",),
                     curve_measures: Sequence[str] = DEFAULT_CURVE_MEASURES) -> NetworkAnalysis:
    """Cross-validated ridge R² of every feature family, and per single layer for the chosen measures.

    Args:
        values: By measure, ``(N, L)`` per-image values.
        ratings: ``(N,)`` ratings.
        folds: Folds per repeat; repeats: repeats; seed: seed of the splits (the same for every family,
            so families are compared on the same splits).
        per_layer_measures: Measures whose layers are also regressed one at a time (the R²-per-layer plot).
        curve_measures: Measures whose depth curves are summarised.

    Returns:
        The network's analysis.
    """
    families, failures = feature_families(values, curve_measures)
    result = NetworkAnalysis(values=dict(values), logistic_failures=failures,
                             correlations={name: _correlations(table, ratings) for name, table in values.items()})
    for name, table in families.items():
        result.families[name] = cross_validated_r2(table, ratings, folds=folds, repeats=repeats, seed=seed)
    for name in per_layer_measures:
        if name in values:
            result.per_layer[name] = [
                cross_validated_r2(_impute_median(values[name][:, [layer]]), ratings, folds=folds,
                                   repeats=repeats, seed=seed) if np.isfinite(values[name][:, layer]).any()
                else (float("nan"), float("nan"))
                for layer in range(values[name].shape[1])]
    return result


def analyze_sparsity(model: Any, images: Sequence[str | Path], ratings: Any, image_size: int,
                     crop: Sequence[float] | None, batch_size: int = 64, measures: Sequence[str] | None = None,
                     folds: int = 10, repeats: int = 5, seed: int = 0, untrained: bool = True,
                     per_layer_measures: Sequence[str] = ("gini",),
                     curve_measures: Sequence[str] = DEFAULT_CURVE_MEASURES,
                     progress: Callable[[str], None] | None = None) -> SparsityAnalysis:
    """Relates a network's activation sparsity to ratings of the images, beside the same network untrained.

    Args:
        model: The trained :class:`~faceattr.models.net.FaceAttrNet` (its backbone's blocks are measured).
        images: Image files, in the order of ``ratings``.
        ratings: ``(N,)`` finite ratings.
        image_size: Side of the network input (the model's).
        crop: The source's fractional crop box (``None``: whole image), as the evaluation transform takes it.
        batch_size: Images per forward pass.
        measures: Names from :data:`~faceattr.explain.sparsity.SPARSITY_MEASURES` (default all).
        folds: Folds per cross-validation repeat (at most N); repeats: its repeats.
        seed: Seed of the splits and of the untrained network's weights.
        untrained: Also analyse an untrained network of the same architecture.
        per_layer_measures: Measures regressed one layer at a time.
        curve_measures: Measures whose depth curves are summarised.
        progress: Called with a line at each stage (e.g. ``print``).

    Returns:
        The analysis, networks ``"trained"`` and (if asked) ``"untrained"``.

    Raises:
        ConfigError: For ratings that are not ``(N,)``, finite and as many as the images, an unknown measure,
            or ``folds`` out of range.
    """
    target = np.asarray(ratings, dtype=np.float64)
    if target.ndim != 1 or len(target) != len(images) or not np.isfinite(target).all():
        raise ConfigError(f"ratings must be ({len(images)},) finite values, one per image; got shape {target.shape}")
    if not 2 <= folds <= len(target):
        raise ConfigError(f"folds must be between 2 and the number of images ({len(target)}), got {folds}")
    names = list(SPARSITY_MEASURES if measures is None else measures)
    unknown = [name for name in names if name not in SPARSITY_MEASURES]
    if unknown:
        raise ConfigError(f"unknown sparsity measures {unknown}; known: {sorted(SPARSITY_MEASURES)}")
    report = progress or (lambda line: None)
    started = time.perf_counter()
    networks = {"trained": model}
    if untrained:
        networks["untrained"] = untrained_copy(model, seed)
    layers = block_names(model)
    report(f"measuring {len(images)} images at {len(layers)} layers of {len(networks)} network(s)")
    values = measure_networks(networks, images, image_size, crop, batch_size, names, layers)
    measured = time.perf_counter()
    results = {}
    for name, network_values in values.items():
        report(f"regressing the ratings on the {name} network's features")
        results[name] = regress_families(network_values, target, folds, repeats, seed, per_layer_measures,
                                         curve_measures)
    return SparsityAnalysis(layers=layers, measures=names, ratings=target, networks=results, folds=folds,
                            repeats=repeats, seed=seed, seconds=time.perf_counter() - started,
                            measure_seconds=measured - started)


def report_markdown(analysis: SparsityAnalysis) -> str:
    """The R² table of every feature family for every network, as Markdown.

    Args:
        analysis: The analysis.

    Returns:
        The Markdown text: a family-by-network table of ``R² ± sd``, then the per-layer R².
    """
    names = list(analysis.networks)
    first = analysis.networks[names[0]]
    lines = [f"Ridge regression, {analysis.repeats} x {analysis.folds}-fold cross-validation, "
             f"{len(analysis.ratings)} images; R² (mean ± sd over repeats).", "",
             "| feature family | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for family in first.families:
        scores = [analysis.networks[name].families[family] for name in names]
        cells = [f"{r2:.3f} ± {spread:.3f}" for r2, spread in scores]
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    for measure in first.per_layer:
        lines += ["", f"R² of {measure} at one layer alone, and its correlation r with the ratings "
                  "(r > 0: sparser faces rated higher):", "",
                  "| layer | " + " | ".join(f"{name} R² | {name} r" for name in names) + " |",
                  "|---|" + "---:|" * 2 * len(names)]
        for position, layer in enumerate(analysis.layers):
            cells = [f"{analysis.networks[name].per_layer[measure][position][0]:.3f} | "
                     f"{analysis.networks[name].correlations[measure][position]:+.3f}" for name in names]
            lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    failures = {name: network.logistic_failures for name, network in analysis.networks.items()}
    lines += ["", f"Logistic depth-curve fits that failed (imputed with the median): {failures}", ""]
    return "\n".join(lines)


def write_report(analysis: SparsityAnalysis, out: str | Path, measure: str = "gini") -> list[Path]:
    """Saves ``report.md`` and ``report.json`` (:func:`~faceattr.files.save_table`) and the plots in ``out``.

    Plots: ``depth.png`` (``measure`` against depth, mean of the top and bottom thirds of ratings, per
    network), ``r2_per_layer.png`` (R² of each per-layer measure at each layer) and ``r2_families.png``
    (R² of each feature family with its spread).

    Args:
        analysis: The analysis.
        out: The folder (created).
        measure: The measure of the depth plot.

    Returns:
        The files written.

    Raises:
        ConfigError: When ``measure`` was not measured.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    from faceattr.files import save_table

    if measure not in analysis.measures:
        raise ConfigError(f"measure {measure!r} was not measured; measured: {analysis.measures}")
    out = Path(out)
    written = list(save_table(out, "report", report_markdown(analysis), analysis.record()))
    low, high = np.quantile(analysis.ratings, [1 / 3, 2 / 3])
    depth = np.arange(len(analysis.layers))
    short = [layer.removeprefix("backbone.") for layer in analysis.layers]

    figure, axes = plt.subplots(1, len(analysis.networks), figsize=(6 * len(analysis.networks), 4), squeeze=False)
    for axis, (name, network) in zip(axes[0], analysis.networks.items()):
        for label, chosen, colour in (("top third", analysis.ratings >= high, "tab:red"),
                                      ("bottom third", analysis.ratings <= low, "tab:blue")):
            values = network.values[measure][chosen]
            mean, spread = values.mean(axis=0), values.std(axis=0) / np.sqrt(max(1, len(values)))
            axis.errorbar(depth, mean, yerr=spread, label=f"{label} of ratings (n={len(values)})", color=colour,
                          capsize=2)
        axis.set(title=f"{name} network", xlabel="layer", ylabel=measure)
        axis.set_xticks(depth, short, rotation=60, fontsize=7)
        axis.legend(fontsize=8)
    written.append(_save(figure, out / "depth.png"))

    figure, axis = plt.subplots(figsize=(7, 4))
    for name, network in analysis.networks.items():
        for per_measure, scores in network.per_layer.items():
            axis.errorbar(depth, [s[0] for s in scores], yerr=[s[1] for s in scores], label=f"{name}: {per_measure}",
                          capsize=2, marker="o")
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.set(title="R² of one layer's sparsity alone", xlabel="layer", ylabel="cross-validated R²")
    axis.set_xticks(depth, short, rotation=60, fontsize=7)
    axis.legend(fontsize=8)
    written.append(_save(figure, out / "r2_per_layer.png"))

    families = list(next(iter(analysis.networks.values())).families)
    figure, axis = plt.subplots(figsize=(8, 0.3 * len(families) * len(analysis.networks) + 1.5))
    height = 0.8 / len(analysis.networks)
    for offset, (name, network) in enumerate(analysis.networks.items()):
        positions = np.arange(len(families)) + offset * height
        axis.barh(positions, [network.families[f][0] for f in families], height,
                  xerr=[network.families[f][1] for f in families], label=name)
    axis.set_yticks(np.arange(len(families)) + height * (len(analysis.networks) - 1) / 2, families, fontsize=7)
    axis.invert_yaxis()
    axis.axvline(0, color="grey", linewidth=0.5)
    axis.set(xlabel="cross-validated R²", title="R² per feature family")
    axis.legend(fontsize=8)
    written.append(_save(figure, out / "r2_families.png"))
    return written


def _save(figure: Any, path: Path) -> Path:
    """Saves and closes a matplotlib figure (closed so that many reports do not pile figures up)."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
