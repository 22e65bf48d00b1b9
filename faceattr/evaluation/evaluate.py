"""Validation: run a model over a loader, gather predictions, and turn them into metrics."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from faceattr.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from faceattr.config import Config, SourceConfig
from faceattr.errors import ConfigError, EvaluationError
from faceattr.evaluation import metrics
from faceattr.evaluation.calibration import (
    apply_calibration,
    cross_fitted_ece,
    expected_calibration_error,
    fit_calibration,
    logits_from_probabilities,
)
from faceattr.evaluation.decision import DEFAULT_DECISION, fit_policies
from faceattr.evaluation.errors import beauty_deciles, gallery_selection
from faceattr.evaluation.summary import evaluation_result
from faceattr.evaluation.thresholds import fit_thresholds
from faceattr.files import save_table
from faceattr.runtime import World, autocast, gather_in_rank_order, select_device

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from faceattr.models.deployed import DeployedModel

logger = logging.getLogger(__name__)

#: Draws an evaluation's error galleries into the report folder: called with the model, the evaluated
#: images (item ``row`` of the dataset is the image of the galleries' ``row``), the evaluation's
#: ``galleries`` section, the report folder and the device; returns each gallery's file by target
#: (an attribute name or ``"beauty"``). :func:`faceattr.explain.galleries.draw_galleries` is one.
GalleryDrawer = Callable[["DeployedModel", "Dataset", Mapping[str, Any], Path, torch.device], dict[str, Path]]


@dataclass
class Predictions:
    """Model outputs and labels for a whole validation set, in dataset order.

    Attributes:
        attribute_probs: ``(N, 40)`` sigmoid probabilities.
        attribute_labels: ``(N, 40)`` 0/1 labels (0 where unknown).
        attribute_mask: ``(N, 40)`` True where the label is known.
        beauty_predicted: ``(N,)`` predicted scores.
        beauty_target: ``(N,)`` rated scores (0 where unknown).
        beauty_mask: ``(N,)`` True where a rating is known.
        loss: Mean validation loss over batches (nan when no loss function was given).
        attribute_logits: ``(N, 40)`` the logits behind ``attribute_probs`` (``None``: taken
            from the probabilities, clipped where float32 saturated them); calibration fits on them.
    """

    attribute_probs: np.ndarray
    attribute_labels: np.ndarray
    attribute_mask: np.ndarray
    beauty_predicted: np.ndarray
    beauty_target: np.ndarray
    beauty_mask: np.ndarray
    loss: float = float("nan")
    attribute_logits: np.ndarray | None = None

    @property
    def logits(self) -> np.ndarray:
        """``(N, 40)`` attribute logits, stored or recovered from the probabilities."""
        if self.attribute_logits is not None:
            return self.attribute_logits
        return logits_from_probabilities(self.attribute_probs)

    @property
    def has_attributes(self) -> bool:
        return bool(self.attribute_mask.any())

    @property
    def has_beauty(self) -> bool:
        return bool(self.beauty_mask.any())


@torch.no_grad()
def predict_loader(model: torch.nn.Module, loader, device: torch.device, world: World = World(),
                   amp: bool = True, loss_fn: torch.nn.Module | None = None) -> Predictions:
    """Runs ``model`` over ``loader`` and gathers every rank's shard, in rank order.

    Args:
        model: Returns the dict of :class:`faceattr.models.FaceAttrNet`.
        loader: Yields batch dicts (``None`` batches, all-corrupt ones, are skipped).
        device: Where the model is.
        world: The DDP world; each rank holds a contiguous shard of the validation set.
        amp: Mixed precision on GPU.
        loss_fn: Optional :class:`faceattr.training.losses.MultiTaskLoss` for a validation loss.

    Returns:
        The predictions of the whole set, identical on every rank.
    """
    model.eval()
    parts: dict[str, list[np.ndarray]] = {key: [] for key in ("probs", "logits", "labels", "mask", "beauty", "target",
                                                         "bmask")}
    losses = []
    for batch in loader:
        if batch is None:
            continue
        batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        with autocast(device, amp):
            outputs = model(batch["image"])
        if loss_fn is not None:
            losses.append(float(loss_fn(outputs, batch)["loss"]))
        parts["probs"].append(torch.sigmoid(outputs["attributes"].float()).cpu().numpy())
        parts["logits"].append(outputs["attributes"].float().cpu().numpy())
        parts["labels"].append(batch["attributes"].cpu().numpy())
        parts["mask"].append(batch["attribute_mask"].cpu().numpy())
        parts["beauty"].append(outputs["beauty"].float().cpu().numpy())
        parts["target"].append(batch["beauty"].cpu().numpy())
        parts["bmask"].append(batch["beauty_mask"].cpu().numpy())
    local = {key: np.concatenate(value) if value else None for key, value in parts.items()}
    gathered = gather_in_rank_order((local, losses), world)
    joined = {key: np.concatenate([g[0][key] for g in gathered if g[0][key] is not None])
              for key in parts if any(g[0][key] is not None for g in gathered)}
    if not joined:
        raise ValueError("the validation loader yielded no usable batch")
    all_losses = [value for g in gathered for value in g[1]]
    return Predictions(joined["probs"], joined["labels"], joined["mask"].astype(bool), joined["beauty"],
                       joined["target"], joined["bmask"].astype(bool),
                       float(np.mean(all_losses)) if all_losses else float("nan"), joined["logits"])


def tune_thresholds(predictions: Predictions, metric: str) -> np.ndarray:
    """Per-attribute thresholds maximising ``metric`` on these predictions (0.5 where no labels)."""
    return fit_thresholds(predictions.attribute_probs, predictions.attribute_labels,
                          predictions.attribute_mask, metric=metric)


def calibrate_and_tune(predictions: Predictions, metric: str
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Fits each attribute's calibration on these predictions, then tunes its threshold on the
    calibrated probabilities, the ones a deployed model gives, and the decision policies' thresholds.

    Returns:
        Temperatures, offsets and thresholds (maximising ``metric``: the ``balanced`` policy),
        40 each, and the other stored policies' thresholds by name
        (:func:`~faceattr.evaluation.decision.fit_policies`; ``{"f1": (40,)}``).
    """
    temperatures, offsets = fit_calibration(predictions.logits, predictions.attribute_labels,
                                            predictions.attribute_mask)
    calibrated = dataclasses.replace(
        predictions, attribute_probs=apply_calibration(predictions.logits, temperatures, offsets))
    fitted = fit_policies(calibrated.attribute_probs, calibrated.attribute_labels, calibrated.attribute_mask)
    policies = {name: values for name, values in fitted.items() if name != "balanced"}
    return temperatures, offsets, tune_thresholds(calibrated, metric), policies


def cross_fitted_means(probs: np.ndarray, labels: np.ndarray, mask: np.ndarray, metric: str) -> dict[str, float]:
    """Mean metrics with thresholds tuned on one half of the images and scored on the other.

    Thresholds tuned and scored on the same images flatter the model; this two-fold
    estimate (halves by alternating rows, each scored with the other's thresholds, then
    averaged) is what tuned thresholds should give on new images.

    >>> rng = np.random.default_rng(0)
    >>> labels = (rng.random((200, 40)) < 0.3).astype(np.float32)
    >>> means = cross_fitted_means(rng.random((200, 40)), labels, np.ones((200, 40), bool), "balanced_accuracy")
    >>> 0.4 < means["balanced_accuracy"] < 0.6  # random scores: no better than chance
    True
    """
    means = []
    for fit_rows, score_rows in metrics.cross_fitting_halves(len(probs)):
        thresholds = fit_thresholds(probs[fit_rows], labels[fit_rows], mask[fit_rows], metric=metric)
        means.append(metrics.mean_metrics(metrics.attribute_metrics(
            probs[score_rows], labels[score_rows], mask[score_rows], thresholds)))
    return {key: float(np.nanmean([m[key] for m in means])) for key in means[0]}


def summarize(predictions: Predictions, thresholds: np.ndarray, meta: dict, threshold_metric: str = "balanced_accuracy",
              high_cutoff: float = 3.5, temperatures: Sequence[float] | None = None,
              offsets: Sequence[float] | None = None, paths: Sequence[str] | None = None,
              gallery_size: int = 0) -> dict:
    """The evaluation dict that :func:`faceattr.evaluation.report.markdown.write_report` renders.

    Args:
        predictions: From :func:`predict_loader`.
        thresholds: ``(40,)`` decision thresholds (the model's tuned ones), which apply to the
            probabilities calibrated with ``temperatures`` and ``offsets``.
        meta: Descriptive fields (checkpoint, split, epoch, backbone, ...).
        threshold_metric: What the thresholds maximise, for the cross-fitted estimate.
        high_cutoff: Rated score from which a face counts as "high" for the beauty ROC.
        temperatures: ``(40,)`` the model's per-attribute temperatures (None: all 1.0, as in a
            checkpoint written before calibration); every attribute metric is computed on the
            calibrated probabilities ``sigmoid(logit / temperature + offset)``.
        offsets: ``(40,)`` the model's per-attribute logit offsets (None: all 0.0).
        paths: The image of each row, for the galleries (None: no galleries).
        gallery_size: Images per gallery row (0: no galleries).

    Returns:
        The evaluation dict (:mod:`faceattr.evaluation.summary`); the attribute (calibration
        and confusion) or beauty parts are None when the data has no such labels, ``galleries``
        without ``paths`` or ``gallery_size``.

    Raises:
        EvaluationError: ``temperatures`` is not 40 positive numbers, ``offsets`` not 40 numbers,
            or ``paths`` not one per row.
    """
    if paths is not None and len(paths) != len(predictions.beauty_mask):
        raise EvaluationError(f"paths: {len(paths)} image paths for {len(predictions.beauty_mask)} predictions")
    parts: dict = {}
    if predictions.has_attributes:
        temperatures = np.ones(NUM_ATTRIBUTES) if temperatures is None else np.asarray(temperatures, np.float64)
        offsets = np.zeros(NUM_ATTRIBUTES) if offsets is None else np.asarray(offsets, np.float64)
        if (temperatures.shape != (NUM_ATTRIBUTES,) or not (temperatures > 0).all()
                or offsets.shape != (NUM_ATTRIBUTES,)):
            raise EvaluationError(f"temperatures and offsets: expected {NUM_ATTRIBUTES} numbers each (temperatures "
                                  f"positive), got {temperatures!r} and {offsets!r}")
        # Uncalibrated, the probabilities are used as they are: the thresholds of a checkpoint
        # written before calibration were tuned on exactly these float32 values.
        calibrated = (predictions.attribute_probs if (temperatures == 1.0).all() and (offsets == 0.0).all()
                      else apply_calibration(predictions.logits, temperatures, offsets))
        args = (calibrated, predictions.attribute_labels, predictions.attribute_mask)
        per_attribute = metrics.attribute_metrics(*args, thresholds)
        parts.update(attributes=per_attribute, means=metrics.mean_metrics(per_attribute),
                     confusion=metrics.confusion_counts(*args, thresholds),
                     means_at_half=metrics.mean_metrics(metrics.attribute_metrics(*args, np.full_like(thresholds, 0.5))),
                     means_cross_fitted=cross_fitted_means(*args, threshold_metric),
                     calibration=calibration_summary(predictions, calibrated, temperatures, offsets))
    if predictions.has_beauty:
        predicted = predictions.beauty_predicted[predictions.beauty_mask]
        target = predictions.beauty_target[predictions.beauty_mask]
        parts.update(beauty=metrics.beauty_metrics(predicted, target, high_cutoff=high_cutoff),
                     beauty_predictions={"predicted": predicted.tolist(), "target": target.tolist()},
                     beauty_deciles=beauty_deciles(predicted, target))
    if paths is not None and gallery_size > 0:
        attribute_rows = ((calibrated, predictions.attribute_labels, predictions.attribute_mask, thresholds)
                          if predictions.has_attributes else (None, None, None, None))
        beauty_rows = ((predictions.beauty_predicted, predictions.beauty_target, predictions.beauty_mask)
                       if predictions.has_beauty else None)
        parts["galleries"] = gallery_selection(*attribute_rows, beauty_rows, paths, gallery_size)
    return evaluation_result(meta, int(len(predictions.beauty_mask)), predictions.loss, **parts)


def calibration_summary(predictions: Predictions, calibrated: np.ndarray, temperatures: np.ndarray,
                        offsets: np.ndarray, bins: int = 15) -> dict:
    """Expected calibration error before and after calibration, and the temperatures and offsets.

    Args:
        predictions: The raw (uncalibrated) predictions.
        calibrated: ``(N, 40)`` their probabilities after ``temperatures`` and ``offsets``.
        temperatures: ``(40,)`` the model's temperatures.
        offsets: ``(40,)`` the model's logit offsets.
        bins: ECE bins.

    Returns:
        ``{"bins", "ece_before", "ece_after", "ece_after_cross_fitted", "temperatures", "offsets",
        "ece_before_per_attribute", "ece_after_per_attribute"}``: means over attributes, and
        dicts by attribute name. ``ece_after_cross_fitted`` refits the calibration on one half
        of these images and scores the other (:func:`~faceattr.evaluation.calibration.cross_fitted_ece`):
        ``ece_after`` is in-sample where the calibration was fitted on these images.
    """
    labels, mask = predictions.attribute_labels, predictions.attribute_mask
    before = expected_calibration_error(predictions.attribute_probs, labels, mask, bins)
    after = expected_calibration_error(calibrated, labels, mask, bins)
    return {"bins": bins, "ece_before": before["mean"], "ece_after": after["mean"],
            "ece_after_cross_fitted": cross_fitted_ece(predictions.logits, labels, mask, bins),
            "temperatures": dict(zip(ATTRIBUTES, temperatures.tolist())),
            "offsets": dict(zip(ATTRIBUTES, offsets.tolist())),
            "ece_before_per_attribute": dict(zip(ATTRIBUTES, before["per_attribute"].tolist())),
            "ece_after_per_attribute": dict(zip(ATTRIBUTES, after["per_attribute"].tolist()))}


def evaluate_checkpoint(checkpoint_path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                        out_dir: str | Path | None = None, device: str = "auto",
                        sources: Sequence[int | str] | None = None, gallery_size: int = 0,
                        draw_galleries: GalleryDrawer | None = None) -> tuple[dict, dict[str, Path]]:
    """Evaluates a checkpoint on the validation data of its own config and writes a report.

    The checkpoint's stored per-attribute thresholds are used as they are, never re-fitted.
    With ``sources``, only those sources' validation images are scored: the data is read as
    in training (held-out groups, leak checks), then ``data.max_val_samples``, if set, caps
    each chosen source on its own, so the figures are those of a config holding only it.
    With ``gallery_size`` and ``draw_galleries``, the most confident errors of each attribute and
    the beauty extremes are picked among the evaluated images (the evaluation's ``galleries``),
    drawn into the report folder and linked from ``report.md``.

    Args:
        checkpoint_path: A ``best.pt``/``last.pt`` written by the trainer.
        overrides: ``key=value`` changes to the stored config, e.g. another dataset root.
        out_dir: Report folder (default: ``report`` beside the checkpoint, or
            ``report_source0_3`` for ``sources=[0, 3]``).
        device: ``auto``, ``cpu`` or ``cuda``.
        sources: Indices into ``data.sources`` or names (:func:`source_label`, or the kind
            alone when one source has it); None: all sources pooled.
        gallery_size: Images per gallery row (0: no galleries).
        draw_galleries: Draws them (:data:`GalleryDrawer`; the evaluation layer draws no images).

    Returns:
        The evaluation dict and the paths of the report files (each gallery's as ``gallery_TARGET``).

    Raises:
        ConfigError: A source index or name that the config does not have.
        EvaluationError: The chosen sources have no validation images.

    >>> evaluation, paths = evaluate_checkpoint("runs/r18/best.pt", sources=["scut"])  # doctest: +SKIP
    """

    from faceattr.config import config_from_dict
    from faceattr.evaluation.report.markdown import write_report
    from faceattr.models.deployed import DeployedModel

    checkpoint_path = Path(checkpoint_path)
    model = DeployedModel.load(checkpoint_path)
    config = config_from_dict(model.config, overrides)
    chosen = range(len(config.data.sources)) if sources is None else _source_indices(config.data.sources, sources)
    labels = [f"data.sources[{i}] ({source_label(config.data.sources[i])})" for i in chosen]
    predictions, images = _validation_predictions(model, config, chosen if sources is not None else None, labels,
                                                  device)
    paths = _row_paths(images, len(predictions.beauty_mask)) if gallery_size > 0 and draw_galleries else None
    epoch = -1 if model.epoch is None else int(model.epoch)
    meta = {"checkpoint": str(checkpoint_path), "split": "val", "epoch": epoch,
            "backbone": config.model.backbone, "image_size": config.data.image_size,
            "sources": ", ".join(labels), "thresholds": "stored in the checkpoint"}
    evaluation = summarize(predictions, np.asarray(model.thresholds, dtype=np.float64), meta,
                           config.train.threshold_metric, temperatures=model.temperatures, offsets=model.offsets,
                           paths=paths, gallery_size=gallery_size)
    default_dir = "report" if sources is None else "report_source" + "_".join(map(str, chosen))
    out = Path(out_dir) if out_dir else checkpoint_path.parent / default_dir
    galleries = {}
    if evaluation["galleries"] is not None and draw_galleries is not None:
        out.mkdir(parents=True, exist_ok=True)
        galleries = draw_galleries(model, images, evaluation["galleries"], out, select_device(device))
    on = "" if sources is None else f" on {', '.join(labels)}"
    written = write_report(evaluation, out, title=f"faceattr evaluation: {checkpoint_path.name}{on}",
                           galleries=galleries)
    return evaluation, written


def evaluate_each_source(checkpoint_path: str | Path, overrides: Sequence[str], out_dir: str | Path,
                         device: str = "auto", gallery_size: int = 0,
                         draw_galleries: GalleryDrawer | None = None) -> list[dict]:
    """Evaluates a checkpoint on each of its sources alone, into ``out_dir/sourceN``, and tabulates them.

    Writes ``sources.json`` (the rows) and ``sources.md`` (the table) into ``out_dir``; a
    source without validation images (training only) gets a row of 0 images and no report.
    ``gallery_size`` and ``draw_galleries`` give each source's report its own error galleries
    (see :func:`evaluate_checkpoint`).

    Returns:
        One row per source (:func:`faceattr.evaluation.report.sources.source_row`).

    >>> rows = evaluate_each_source("runs/r18/best.pt", [], "runs/r18/report_sources")  # doctest: +SKIP
    """
    from faceattr.config import config_from_dict
    from faceattr.evaluation.report.sources import source_row, sources_markdown
    from faceattr.models.deployed import DeployedModel

    out = Path(out_dir)
    # DeployedModel, not the raw checkpoint: an export (the installed default) keeps its config in its description.
    configured = config_from_dict(DeployedModel.load(checkpoint_path).config, list(overrides)).data.sources
    rows = []
    for index, source in enumerate(configured):
        try:
            evaluation, _ = evaluate_checkpoint(checkpoint_path, overrides, out / f"source{index}", device, [index],
                                                gallery_size, draw_galleries)
        except EvaluationError as error:  # a source used for training only
            logger.warning("source %d: %s", index, error)
            evaluation = None
        rows.append(source_row(index, source_label(source), evaluation))
    save_table(out, "sources", sources_markdown(rows, str(checkpoint_path)), rows)
    return rows


def calibrate_checkpoint(checkpoint_path: str | Path, out_path: str | Path, device: str = "auto",
                         overrides: Sequence[str] = ()) -> dict:
    """Fits a checkpoint's calibration, thresholds and decision policies again on its validation data, as training does.

    For checkpoints trained before calibration existed, or to re-fit after changing the
    validation sources with ``overrides`` (``key=value`` changes to the stored config, kept in
    the new checkpoint), e.g. a model trained on a pack (tools/pack_dataset.py) calibrated on the
    original images. The weights are unchanged. Writes a deployable checkpoint to ``out_path``.

    Returns:
        The evaluation dict stored in the new checkpoint.
    """
    from faceattr.config import config_from_dict
    from faceattr.models.deployed import DeployedModel
    from faceattr.models.weights_io import save_checkpoint

    model = DeployedModel.load(checkpoint_path)
    config = config_from_dict(model.config, list(overrides))
    predictions, _ = _validation_predictions(model, config, None, [], device)
    temperatures, offsets, thresholds, policies = calibrate_and_tune(predictions, config.train.threshold_metric)
    epoch = -1 if model.epoch is None else int(model.epoch)
    meta = {"checkpoint": str(checkpoint_path), "split": "val", "epoch": epoch, "backbone": config.model.backbone,
            "image_size": config.data.image_size, "thresholds": "tuned on these images"}
    evaluation = summarize(predictions, thresholds, meta, config.train.threshold_metric,
                           temperatures=temperatures, offsets=offsets)
    calibrated = DeployedModel.from_training(model.build_network(), thresholds, config, epoch, evaluation,
                                             temperatures, offsets, policies, DEFAULT_DECISION)
    # The crop is the one the weights were trained on, whatever sources calibrated them.
    save_checkpoint(dataclasses.replace(calibrated, crop=model.crop).to_checkpoint(), out_path)
    return evaluation


def source_predictions(deployed: DeployedModel, sources: Sequence[int | str], overrides: Sequence[str] = (),
                       device: str = "auto") -> tuple[Predictions, list[str]]:
    """A model's network on the validation images of some of its config's sources, and each row's image path.

    Args:
        deployed: The model; its stored config says where the data is.
        sources: Indices into ``data.sources`` or names (:func:`source_label`).
        overrides: ``key=value`` changes to the stored config.
        device: ``auto``, ``cpu`` or ``cuda``.

    Raises:
        ConfigError: A source the config does not have.
        EvaluationError: No validation images, or unreadable images were skipped (rows would not match paths).
    """
    from faceattr.config import config_from_dict

    config = config_from_dict(deployed.config, list(overrides))
    chosen = _source_indices(config.data.sources, sources)
    labels = [f"data.sources[{i}] ({source_label(config.data.sources[i])})" for i in chosen]
    predictions, images = _validation_predictions(deployed, config, chosen, labels, device)
    paths = _row_paths(images, len(predictions.beauty_mask))
    if paths is None:
        raise EvaluationError(f"{', '.join(labels)}: unreadable images were skipped, so rows cannot be matched to images")
    return predictions, paths


def _validation_predictions(deployed: DeployedModel, config: Config, chosen: Sequence[int] | None,
                            labels: list[str], device: str) -> tuple[Predictions, Dataset]:
    """The model's network on the validation images of the chosen sources (all when None), and those images
    (the dataset whose item ``i`` gave row ``i``, unless unreadable images were skipped)."""
    from torch.utils.data import ConcatDataset

    from faceattr.data.loader import build_data, build_loaders, evenly_spread

    target = select_device(device)
    model = deployed.build_network().to(target)
    if chosen is None:
        bundle = build_data(config.data)
    else:
        # Uncapped, the validation set is one dataset per source, in order; each is capped alone.
        bundle = build_data(dataclasses.replace(config.data, max_val_samples=0))
        parts = [evenly_spread(bundle.val.datasets[i], config.data.max_val_samples) for i in chosen]
        if not sum(len(part) for part in parts):
            raise EvaluationError(f"{', '.join(labels)}: no validation images to evaluate")
        bundle = dataclasses.replace(bundle, val=ConcatDataset(parts))
    _, val_loader = build_loaders(bundle, config.data, seed=config.train.seed, device=target)
    return predict_loader(model, val_loader, target, amp=config.train.amp), bundle.val


def _row_paths(images: Dataset, rows: int) -> list[str] | None:
    """The image path of each prediction row, or None (with a warning) where skipped images broke the match."""
    from faceattr.data.dataset import dataset_records

    records = dataset_records(images)
    if len(records) != rows:
        logger.warning("no error galleries: %d predictions for %d validation images (unreadable images were "
                       "skipped, data.on_bad_sample: skip), so rows cannot be matched to images", rows, len(records))
        return None
    return [str(record.path) for record in records]


def source_label(source: SourceConfig) -> str:
    """A source's name in reports and for ``tools/eval.py --source``: its kind, and its image folder if set.

    >>> from faceattr.config import SourceConfig
    >>> source_label(SourceConfig(kind="celeba", images="/data/aligned/img_celeba"))
    'celeba:img_celeba'
    >>> source_label(SourceConfig(kind="scut"))
    'scut'
    """
    return f"{source.kind}:{Path(source.images).name}" if source.images else source.kind


def _source_indices(configured: Sequence[SourceConfig], wanted: Sequence[int | str]) -> list[int]:
    """Positions in ``data.sources`` of indices or names (a kind alone must name one source)."""
    labels = [source_label(source) for source in configured]
    listing = ", ".join(f"{i} {label}" for i, label in enumerate(labels))
    indices = []
    for item in wanted:
        if isinstance(item, int):
            found = [item] if 0 <= item < len(labels) else []
        else:
            found = [i for i, label in enumerate(labels) if item == label] or [
                i for i, source in enumerate(configured) if item == source.kind]
        if len(found) != 1:
            problem = "matches several" if found else "is not one"
            raise ConfigError(f"source {item!r} {problem} of data.sources: {listing}")
        indices += [i for i in found if i not in indices]
    return indices
