"""Validation: run a model over a loader, gather predictions, and turn them into metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceattr import metrics
from faceattr.runtime import World, autocast, gather_in_rank_order
from faceattr.thresholds import fit_thresholds

logger = logging.getLogger(__name__)


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
    """

    attribute_probs: np.ndarray
    attribute_labels: np.ndarray
    attribute_mask: np.ndarray
    beauty_predicted: np.ndarray
    beauty_target: np.ndarray
    beauty_mask: np.ndarray
    loss: float = float("nan")

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
        loss_fn: Optional :class:`faceattr.losses.MultiTaskLoss` for a validation loss.

    Returns:
        The predictions of the whole set, identical on every rank.
    """
    model.eval()
    parts: dict[str, list[np.ndarray]] = {key: [] for key in ("probs", "labels", "mask", "beauty", "target", "bmask")}
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
                       float(np.mean(all_losses)) if all_losses else float("nan"))


def tune_thresholds(predictions: Predictions, metric: str) -> np.ndarray:
    """Per-attribute thresholds maximising ``metric`` on these predictions (0.5 where no labels)."""
    return fit_thresholds(predictions.attribute_probs, predictions.attribute_labels,
                          predictions.attribute_mask, metric=metric)


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
    halves = [np.arange(len(probs)) % 2 == k for k in (0, 1)]
    means = []
    for fit_rows, score_rows in ((halves[0], halves[1]), (halves[1], halves[0])):
        thresholds = fit_thresholds(probs[fit_rows], labels[fit_rows], mask[fit_rows], metric=metric)
        means.append(metrics.mean_metrics(metrics.attribute_metrics(
            probs[score_rows], labels[score_rows], mask[score_rows], thresholds)))
    return {key: float(np.nanmean([m[key] for m in means])) for key in means[0]}


def summarize(predictions: Predictions, thresholds: np.ndarray, meta: dict, threshold_metric: str = "balanced_accuracy",
              high_cutoff: float = 3.5) -> dict:
    """The evaluation dict that :func:`faceattr.report.write_report` renders.

    Args:
        predictions: From :func:`predict_loader`.
        thresholds: ``(40,)`` decision thresholds (the model's tuned ones).
        meta: Descriptive fields (checkpoint, split, epoch, backbone, ...).
        threshold_metric: What the thresholds maximise, for the cross-fitted estimate.
        high_cutoff: Rated score from which a face counts as "high" for the beauty ROC.

    Returns:
        ``{"meta", "attributes", "attribute_means", "attribute_means_at_0.5",
        "attribute_means_cross_fitted", "beauty", "beauty_predictions"}``; the attribute or
        beauty parts are None when the data has no such labels.
    """
    evaluation: dict = {"meta": {**meta, "images": int(len(predictions.beauty_mask)),
                                 "validation_loss": predictions.loss},
                        "attributes": None, "attribute_means": None, "attribute_means_at_0.5": None,
                        "attribute_means_cross_fitted": None, "beauty": None, "beauty_predictions": None}
    if predictions.has_attributes:
        args = (predictions.attribute_probs, predictions.attribute_labels, predictions.attribute_mask)
        per_attribute = metrics.attribute_metrics(*args, thresholds)
        evaluation["attributes"] = per_attribute
        evaluation["attribute_means"] = metrics.mean_metrics(per_attribute)
        evaluation["attribute_means_at_0.5"] = metrics.mean_metrics(
            metrics.attribute_metrics(*args, np.full_like(thresholds, 0.5)))
        evaluation["attribute_means_cross_fitted"] = cross_fitted_means(*args, threshold_metric)
    if predictions.has_beauty:
        predicted = predictions.beauty_predicted[predictions.beauty_mask]
        target = predictions.beauty_target[predictions.beauty_mask]
        evaluation["beauty"] = metrics.beauty_metrics(predicted, target, high_cutoff=high_cutoff)
        evaluation["beauty_predictions"] = {"predicted": predicted.tolist(), "target": target.tolist()}
    return evaluation


def headline(evaluation: dict) -> float:
    """The number a run is selected on: mean balanced accuracy, else beauty Pearson, else nan."""
    if evaluation["attribute_means"] is not None:
        return float(evaluation["attribute_means"]["balanced_accuracy"])
    if evaluation["beauty"] is not None:
        return float(evaluation["beauty"]["pearson"])
    return float("nan")


def evaluate_checkpoint(checkpoint_path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                        out_dir: str | Path | None = None, device: str = "auto") -> tuple[dict, dict[str, Path]]:
    """Evaluates a checkpoint on the validation data of its own config and writes a report.

    The checkpoint's stored per-attribute thresholds are used as they are, never re-fitted.

    Args:
        checkpoint_path: A ``best.pt``/``last.pt`` written by the trainer.
        overrides: ``key=value`` changes to the stored config, e.g. another dataset root.
        out_dir: Report folder (default: ``report`` beside the checkpoint).
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        The evaluation dict and the paths of the report files.
    """
    from faceattr.checkpoint import load_checkpoint, model_from_checkpoint
    from faceattr.config import config_from_dict
    from faceattr.data.loader import build_data, build_loaders
    from faceattr.report import write_report
    from faceattr.runtime import select_device

    checkpoint_path = Path(checkpoint_path)
    checkpoint = load_checkpoint(checkpoint_path)
    config = config_from_dict(checkpoint["config"], overrides)
    target = select_device(device)
    model = model_from_checkpoint(checkpoint).to(target)
    bundle = build_data(config.data)
    _, val_loader = build_loaders(bundle, config.data, seed=config.train.seed)
    predictions = predict_loader(model, val_loader, target, amp=config.train.amp)
    meta = {"checkpoint": str(checkpoint_path), "split": "val", "epoch": int(checkpoint.get("epoch", -1)),
            "backbone": config.model.backbone, "image_size": config.data.image_size,
            "sources": ", ".join(bundle.source_names)}
    evaluation = summarize(predictions, np.asarray(checkpoint["thresholds"], dtype=np.float64), meta,
                           config.train.threshold_metric)
    paths = write_report(evaluation, Path(out_dir) if out_dir else checkpoint_path.parent / "report",
                         title=f"faceattr evaluation: {checkpoint_path.name}")
    return evaluation, paths
