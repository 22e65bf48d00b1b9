"""The sparsity analysis of a rated image set: Dibot et al. (2023)'s design run on faceattr networks.

:func:`analyze_sparsity` streams the images through the trained network and, in the same pass, an
untrained network of the same architecture (the comparison that asks whether training changes the link)
and any other networks to compare (e.g. faceattr's attribute-only and beauty-only models), each reading the
images at its own input size and crop. It measures every block's activation sparsity with
:class:`~faceattr.explain.sparsity.LayerStatistics` (per-image values only, never the activations), keeps
the pooled penultimate features (the embedding, ``(N, D)`` per network), and predicts the ratings from
each feature family by ridge regression with repeated k-fold cross-validation
(:func:`~faceattr.explain.sparsity.cross_validated_r2`). :func:`write_report` saves the Markdown table,
its JSON figures and three plots. :mod:`faceattr.explain.rated_images` reads the rated images (SCUT-FBP5500
or a folder with a CSV of ratings) and loads the networks for ``faceattr analyze sparsity``.

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
- ``embedding L1`` and ``embedding L2``: the pooled penultimate features (what the heads read,
  :meth:`~faceattr.models.net.FaceAttrNet.features`) divided by their L1 or L2 norm, for networks that
  have a ``backbone`` (the feature-based measure the paper set beside sparsity).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from faceattr.errors import ConfigError
from faceattr.explain.sparsity import (
    SPARSITY_MEASURES,
    LayerStatistics,
    block_names,
    contextual,
    cross_validated_r2,
    depth_curve_summary,
)
from faceattr.inference.results import normalised

#: The control measure: kept apart from the sparsity measures, as in the paper.
CONTROL = "mean_activation"
#: The depth-curve summary values used as features (``logistic_steepness`` repeats the slope's information).
CURVE_FEATURES: tuple[str, ...] = ("linear_slope", "range", "acceleration", "logistic_slope", "logistic_inflexion")
#: The measures whose depth curves are summarised by default (the logistic fit costs ~ms per image).
DEFAULT_CURVE_MEASURES: tuple[str, ...] = ("gini", "l0", "hoyer")


#: The embedding feature families, by name: each divides the pooled features by one norm
#: (:func:`~faceattr.inference.results.normalised`, as ``faceattr embed --normalise`` does).
EMBEDDING_NORMS: dict[str, str] = {"embedding L1": "l1", "embedding L2": "l2"}


@dataclass(frozen=True)
class NetworkInput:
    """A network to measure, and how the images are read for it.

    Attributes:
        network: A :class:`~faceattr.models.net.FaceAttrNet` (or any module taking a uint8 ``(B, 3, S, S)``
            batch; its embedding is kept only when it has a ``backbone``).
        image_size: Side of its input.
        crop: Fractional crop box cut before resizing (``None``: the whole image).
        model: Where it came from, for the report (e.g. a checkpoint's path).
    """

    network: Any
    image_size: int
    crop: tuple[float, ...] | None = None
    model: str = ""


@dataclass
class NetworkMeasures:
    """What one streamed pass keeps of one network.

    Attributes:
        values: By measure, ``(N, L)`` per-image values at each layer.
        embeddings: ``(N, D)`` pooled penultimate features, ``None`` for a network without a ``backbone``.
    """

    values: dict[str, np.ndarray]
    embeddings: np.ndarray | None = None


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
        layers: The measured modules, in depth order.
        image_size: Side of the input it read; crop: the crop cut before resizing; model: where it came from.
        embedding_size: ``D`` of its embedding (0 when none was kept).
    """

    values: dict[str, np.ndarray]
    families: dict[str, tuple[float, float]] = field(default_factory=dict)
    per_layer: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    logistic_failures: dict[str, int] = field(default_factory=dict)
    correlations: dict[str, list[float]] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)
    image_size: int = 0
    crop: tuple[float, ...] | None = None
    model: str = ""
    embedding_size: int = 0


@dataclass
class SparsityAnalysis:
    """The result of :func:`analyze_sparsity`.

    Attributes:
        layers: The first (trained) network's measured modules, in depth order (each network has its own).
        measures: The measures taken.
        ratings: ``(N,)`` the ratings, in the images' order.
        networks: By name (``"trained"``, ``"untrained"`` when asked, then the compared ones), the analyses.
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
                "networks": {name: {"model": network.model, "image_size": network.image_size,
                                    "crop": None if network.crop is None else list(network.crop),
                                    "layers": network.layers, "embedding_size": network.embedding_size,
                                    "families": {family: {"r2": r2, "sd": sd}
                                                 for family, (r2, sd) in network.families.items()},
                                    "per_layer": {measure: [{"layer": layer, "r2": r2, "sd": sd}
                                                            for layer, (r2, sd) in zip(network.layers, scores)]
                                                  for measure, scores in network.per_layer.items()},
                                    "logistic_failures": network.logistic_failures,
                                    "correlations": {measure: dict(zip(network.layers, values))
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


def measure_networks(networks: Mapping[str, NetworkInput], images: Sequence[str | Path], batch_size: int = 64,
                     measures: Sequence[str] | None = None, workers: int = 2) -> dict[str, NetworkMeasures]:
    """Streams the images once through every network and returns each one's per-image measures and embedding.

    Each image file is decoded once (:func:`~faceattr.image.load_image`), by ``workers`` threads, and cut
    by the evaluation transform (:func:`~faceattr.data.transforms.eval_transform`) once per distinct
    ``(image_size, crop)`` of the networks; each batch is fed to every network. Only the ``(batch,)``
    measures of every block (:func:`~faceattr.explain.sparsity.block_names`) and, from a hook on the
    network's ``backbone`` (the module :meth:`~faceattr.models.net.FaceAttrNet.features` runs), the
    ``(batch, D)`` pooled features are kept.

    Args:
        networks: By name, the networks and how each reads the images.
        images: Image files.
        batch_size: Images per forward pass.
        measures: Names from :data:`~faceattr.explain.sparsity.SPARSITY_MEASURES` (default all).
        workers: Threads decoding images.

    Returns:
        By network name, its measures: ``(N, L)`` values per measure and the ``(N, D)`` embeddings.

    Raises:
        ConfigError: For no images, no networks, a batch size below 1, or an unknown measure.
        ImageError: For an unreadable image (the message names it).
    """
    import torch

    from faceattr.data.transforms import eval_transform
    from faceattr.image import load_image

    if not images:
        raise ConfigError("images is empty: nothing to measure")
    if not networks:
        raise ConfigError("networks is empty: nothing to measure")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    readings = {(entry.image_size, None if entry.crop is None else tuple(entry.crop)) for entry in networks.values()}
    transforms = {reading: eval_transform(*reading) for reading in readings}

    def read(path: str | Path) -> dict[tuple, Any]:
        image = load_image(path)
        return {reading: transform(image) for reading, transform in transforms.items()}

    statistics = {name: LayerStatistics(entry.network, measures=measures) for name, entry in networks.items()}
    embeddings: dict[str, list[np.ndarray]] = {name: [] for name, entry in networks.items()
                                               if hasattr(entry.network, "backbone")}
    latest: dict[str, np.ndarray] = {}  # the batch's features by network, set by the hooks

    def keep(name: str) -> Callable[..., None]:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            latest[name] = output.detach().float().cpu().numpy()

        return hook

    handles = [networks[name].network.backbone.register_forward_hook(keep(name)) for name in embeddings]
    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for start in range(0, len(images), batch_size):
                decoded = list(pool.map(read, images[start:start + batch_size]))
                batches = {reading: torch.stack([inputs[reading] for inputs in decoded]) for reading in readings}
                for name, entry in networks.items():
                    crop = None if entry.crop is None else tuple(entry.crop)
                    statistics[name].update(batches[(entry.image_size, crop)])
                    if name in embeddings:  # taken right after its own pass: one module may serve two names
                        embeddings[name].append(latest.pop(name))
    finally:
        for handle in handles:
            handle.remove()
        for stats in statistics.values():
            stats.close()
    return {name: NetworkMeasures(stats.values(), np.concatenate(embeddings[name]) if name in embeddings else None)
            for name, stats in statistics.items()}


def embedding_families(embeddings: np.ndarray) -> dict[str, np.ndarray]:
    """The embedding feature tables: the features divided by their L1 and by their L2 norm, per image.

    Args:
        embeddings: ``(N, D)`` pooled features.

    Returns:
        By family name (:data:`EMBEDDING_NORMS`), ``(N, D)`` tables; an all-zero embedding stays zero.

    >>> families = embedding_families(np.array([[3.0, -4.0], [0.0, 0.0]]))
    >>> families["embedding L1"][0].tolist(), families["embedding L2"][0].tolist(), families["embedding L2"][1].tolist()
    ([0.42857142857142855, -0.5714285714285714], [0.6, -0.8], [0.0, 0.0])
    """
    return {name: normalised(embeddings, normalise, np.float64) for name, normalise in EMBEDDING_NORMS.items()}


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
                     curve_measures: Sequence[str] = DEFAULT_CURVE_MEASURES,
                     embeddings: np.ndarray | None = None) -> NetworkAnalysis:
    """Cross-validated ridge R² of every feature family, and per single layer for the chosen measures.

    Args:
        values: By measure, ``(N, L)`` per-image values.
        ratings: ``(N,)`` ratings.
        folds: Folds per repeat; repeats: repeats; seed: seed of the splits (the same for every family,
            so families are compared on the same splits).
        per_layer_measures: Measures whose layers are also regressed one at a time (the R²-per-layer plot).
        curve_measures: Measures whose depth curves are summarised.
        embeddings: ``(N, D)`` pooled features, regressed as :func:`embedding_families` (``None``: not).

    Returns:
        The network's analysis.
    """
    families, failures = feature_families(values, curve_measures)
    if embeddings is not None:
        families.update(embedding_families(embeddings))
    result = NetworkAnalysis(values=dict(values), logistic_failures=failures,
                             correlations={name: _correlations(table, ratings) for name, table in values.items()},
                             embedding_size=0 if embeddings is None else int(embeddings.shape[1]))
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
                     compare: Mapping[str, NetworkInput] | None = None, model_name: str = "",
                     progress: Callable[[str], None] | None = None) -> SparsityAnalysis:
    """Relates networks' activation sparsity and embeddings to ratings of the images.

    The trained network, its untrained copy (same input) and the ``compare`` networks (each with its own
    input size and crop) are measured in one streamed pass (:func:`measure_networks`), then each one's
    feature families are regressed on the ratings (:func:`regress_families`) on the same splits.

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
        compare: Other networks by name (not ``trained`` or ``untrained``), analysed alike.
        model_name: Where ``model`` came from, for the report.
        progress: Called with a line at each stage (e.g. ``print``).

    Returns:
        The analysis, networks ``"trained"``, ``"untrained"`` (if asked), then those of ``compare``.

    Raises:
        ConfigError: For ratings that are not ``(N,)``, finite and as many as the images, an unknown measure,
            ``folds`` out of range, or a compared network named ``trained`` or ``untrained``.
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
    taken = sorted({"trained", "untrained"} & set(compare or {}))
    if taken:
        raise ConfigError(f"compared networks cannot be named {taken}: those names are the analysed model's")
    report = progress or (lambda line: None)
    started = time.perf_counter()
    own_crop = None if crop is None else tuple(float(value) for value in crop)
    networks = {"trained": NetworkInput(model, image_size, own_crop, model_name)}
    if untrained:
        networks["untrained"] = NetworkInput(untrained_copy(model, seed), image_size, own_crop,
                                             f"{model_name or 'the trained network'}'s architecture, "
                                             f"random weights (seed {seed})")
    networks.update(compare or {})
    report(f"measuring {len(images)} images with {len(networks)} network(s): {', '.join(networks)}")
    measured_values = measure_networks(networks, images, batch_size, names)
    measured = time.perf_counter()
    results = {}
    # One BLAS thread for the many small ridge fits: on this 2-core machine under load, OpenBLAS's two
    # threads wait on each other and a 512-feature fit took 15 s instead of 0.3 s (eigh of 512x512: 4 s
    # with 2 threads, 0.3 s with 1); unloaded, the second thread gains little on matrices this small.
    with threadpool_limits(limits=1, user_api="blas"):
        for name, measures_of in measured_values.items():
            report(f"regressing the ratings on the {name} network's features")
            result = regress_families(measures_of.values, target, folds, repeats, seed, per_layer_measures,
                                      curve_measures, measures_of.embeddings)
            entry = networks[name]
            result.layers, result.image_size, result.crop, result.model = (
                block_names(entry.network), entry.image_size, entry.crop, entry.model)
            results[name] = result
    return SparsityAnalysis(layers=results["trained"].layers, measures=names, ratings=target, networks=results,
                            folds=folds, repeats=repeats, seed=seed, seconds=time.perf_counter() - started,
                            measure_seconds=measured - started)


def _families(analysis: SparsityAnalysis) -> list[str]:
    """Every feature family of any network, in the order they were first regressed."""
    return list(dict.fromkeys(family for network in analysis.networks.values() for family in network.families))


def _same_layers(analysis: SparsityAnalysis) -> list[list[str]]:
    """The networks' names grouped by identical layer lists (one group when all share an architecture)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, network in analysis.networks.items():
        groups.setdefault(tuple(network.layers), []).append(name)
    return list(groups.values())


def report_markdown(analysis: SparsityAnalysis) -> str:
    """The networks, and the R² table of every feature family for every network, as Markdown.

    Args:
        analysis: The analysis.

    Returns:
        The Markdown text: the networks and their inputs, a family-by-network table of ``R² ± sd`` (``—``
        where a network has no such family), then the per-layer R² (one table per architecture).
    """
    names = list(analysis.networks)
    lines = [f"Ridge regression, {analysis.repeats} x {analysis.folds}-fold cross-validation, "
             f"{len(analysis.ratings)} images; R² (mean ± sd over repeats). {analysis.seconds:.0f} s in all, "
             f"{analysis.measure_seconds:.0f} s of it measuring.", "",
             "| network | model | input | crop | layers | embedding size |", "|---|---|---:|---|---:|---:|"]
    for name, network in analysis.networks.items():
        crop = "whole image" if network.crop is None else ", ".join(f"{value:g}" for value in network.crop)
        lines.append(f"| {name} | {network.model or '—'} | {network.image_size} px | {crop} | {len(network.layers)} "
                     f"| {network.embedding_size or '—'} |")
    lines += ["", "| feature family | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for family in _families(analysis):
        scores = [analysis.networks[name].families.get(family) for name in names]
        cells = ["—" if score is None else f"{score[0]:.3f} ± {score[1]:.3f}" for score in scores]
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    per_layer_measures = dict.fromkeys(m for network in analysis.networks.values() for m in network.per_layer)
    for measure in per_layer_measures:
        for group in _same_layers(analysis):
            group = [name for name in group if measure in analysis.networks[name].per_layer]
            if not group:
                continue
            lines += ["", f"R² of {measure} at one layer alone, and its correlation r with the ratings "
                      "(r > 0: sparser images rated higher):", "",
                      "| layer | " + " | ".join(f"{name} R² | {name} r" for name in group) + " |",
                      "|---|" + "---:|" * 2 * len(group)]
            for position, layer in enumerate(analysis.networks[group[0]].layers):
                cells = [f"{analysis.networks[name].per_layer[measure][position][0]:.3f} | "
                         f"{analysis.networks[name].correlations[measure][position]:+.3f}" for name in group]
                lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    failures = {name: network.logistic_failures for name, network in analysis.networks.items()}
    lines += ["", f"Logistic depth-curve fits that failed (imputed with the median): {failures}", ""]
    return "\n".join(lines)


#: The files :func:`write_report` writes in its folder.
REPORT_FILES: tuple[str, ...] = ("report.md", "report.json", "depth.png", "r2_per_layer.png", "r2_families.png")


def write_report(analysis: SparsityAnalysis, out: str | Path, measure: str = "gini") -> list[Path]:
    """Saves ``report.md`` and ``report.json`` (:func:`~faceattr.files.save_table`) and the plots in ``out``.

    Plots: ``depth.png`` (``measure`` against depth, mean of the top and bottom thirds of ratings, per
    network), ``r2_per_layer.png`` (R² of each per-layer measure at each layer, per network) and
    ``r2_families.png`` (R² of each feature family with its spread). Each file is written whole
    (:func:`~faceattr.files.write_exclusive`, replacing a file of that name: callers that must keep a user's
    files check :data:`REPORT_FILES` first, as ``faceattr analyze sparsity`` does).

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

    figure, axes = plt.subplots(1, len(analysis.networks), figsize=(6 * len(analysis.networks), 4), squeeze=False)
    for axis, (name, network) in zip(axes[0], analysis.networks.items()):
        for label, chosen, colour in (("top third", analysis.ratings >= high, "tab:red"),
                                      ("bottom third", analysis.ratings <= low, "tab:blue")):
            values = network.values[measure][chosen]
            mean, spread = values.mean(axis=0), values.std(axis=0) / np.sqrt(max(1, len(values)))
            axis.errorbar(np.arange(len(network.layers)), mean, yerr=spread,
                          label=f"{label} of ratings (n={len(values)})", color=colour, capsize=2)
        axis.set(title=f"{name} network", xlabel="layer", ylabel=measure)
        _layer_ticks(axis, network.layers)
        axis.legend(fontsize=8)
    written.append(_save(figure, out / "depth.png"))

    figure, axis = plt.subplots(figsize=(7, 4))
    for name, network in analysis.networks.items():
        for per_measure, scores in network.per_layer.items():
            axis.errorbar(np.arange(len(scores)), [s[0] for s in scores], yerr=[s[1] for s in scores],
                          label=f"{name}: {per_measure}", capsize=2, marker="o")
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.set(title="R² of one layer's sparsity alone", xlabel="layer", ylabel="cross-validated R²")
    groups = _same_layers(analysis)
    if len(groups) == 1:  # one architecture: its layer names; else the depth index only
        _layer_ticks(axis, analysis.layers)
    axis.legend(fontsize=8)
    written.append(_save(figure, out / "r2_per_layer.png"))

    families = _families(analysis)
    figure, axis = plt.subplots(figsize=(8, 0.3 * len(families) * len(analysis.networks) + 1.5))
    height = 0.8 / len(analysis.networks)
    for offset, (name, network) in enumerate(analysis.networks.items()):
        positions = np.arange(len(families)) + offset * height
        scores = [network.families.get(family, (np.nan, 0.0)) for family in families]
        axis.barh(positions, [s[0] for s in scores], height, xerr=[s[1] for s in scores], label=name)
    axis.set_yticks(np.arange(len(families)) + height * (len(analysis.networks) - 1) / 2, families, fontsize=7)
    axis.invert_yaxis()
    axis.axvline(0, color="grey", linewidth=0.5)
    axis.set(xlabel="cross-validated R²", title="R² per feature family")
    axis.legend(fontsize=8)
    written.append(_save(figure, out / "r2_families.png"))
    return written


def _layer_ticks(axis: Any, layers: Sequence[str]) -> None:
    """Labels a depth axis with the layers' names (without the ``backbone.`` prefix they all share)."""
    axis.set_xticks(np.arange(len(layers)), [layer.removeprefix("backbone.") for layer in layers],
                    rotation=60, fontsize=7)


def _save(figure: Any, path: Path) -> Path:
    """Saves a matplotlib figure as a PNG, written whole, and closes it (so that many reports do not pile
    figures up)."""
    import matplotlib.pyplot as plt

    from faceattr.files import write_exclusive

    figure.tight_layout()
    try:
        write_exclusive(path, lambda file: figure.savefig(file, format="png", dpi=110))
    finally:
        plt.close(figure)
    return path
