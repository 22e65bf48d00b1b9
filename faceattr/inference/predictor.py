"""The prediction API: images in, each face's 40 attributes and beauty score out.

The pipeline: read the image (:func:`read_reduced`: large JPEGs are decoded at a reduced size), find faces (:class:`~faceattr.inference.detect.FaceDetector`),
warp each onto the training crop (:func:`~faceattr.inference.align.align_crop`), run the network in
batches, calibrate its probabilities with the model's per-attribute temperatures and offsets,
and list the present attributes by a decision policy (:mod:`faceattr.evaluation.decision`: the
model's default unless one is named), most probable first. Images already aligned as CelebA's skip detection
and alignment (:meth:`Predictor.predict_aligned`). Without a model named, the default model
installed with the package is used (:class:`~faceattr.models.deployed.DeployedModel`).

>>> import faceattr
>>> results = faceattr.predict("photo.jpg")  # doctest: +SKIP
>>> [face.attributes for face in results]  # doctest: +SKIP
[('Male', 'Smiling', 'Young')]
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from faceattr.attributes import ATTRIBUTES, BEAUTY_RANGE
from faceattr.data.transforms import eval_transform
from faceattr.errors import ConfigError, ImageError
from faceattr.evaluation.calibration import apply_calibration
from faceattr.evaluation.decision import decide, policy_thresholds
from faceattr.image import PREDICTION_MAX_PIXELS, read_image, read_reduced, source_name
from faceattr.inference.align import align_crop, crop_outside
from faceattr.inference.backends import load_network
from faceattr.inference.detect import Detection, FaceDetector
from faceattr.inference.results import (  # re-exported: the public API's home is predictor
    FaceEmbedding,
    FaceResult,
    ImageEmbeddings,
    ImageResult,
    normalised,
)
from faceattr.models.deployed import DeployedModel
from faceattr.runtime import select_device

logger = logging.getLogger(__name__)

#: Where a detector without landmarks (Haar) is assumed to have put them, as fractions of its
#: box (x, y), MTCNN order; a rough stand-in so that such faces can still be aligned.
BOX_LANDMARKS: np.ndarray = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])

#: The share of the model's input width that a face's detector box spans after alignment:
#: CelebA's eyes are 39 px apart in the 159 px crop, and MTCNN's box is about 2.2 eye
#: distances wide (1.9-2.7 on the group photos in ../shared/data/faces).
CROP_FACE_SHARE = 0.55

#: How many checkpoints :func:`predict` keeps loaded.
_CACHE_SIZE = 4


def _landmarks(detection: Detection) -> np.ndarray:
    """The detection's landmarks, or points estimated from its box when the detector gives none."""
    if detection.landmarks is not None:
        return detection.landmarks
    x1, y1, x2, y2 = detection.box
    return np.array([x1, y1]) + BOX_LANDMARKS * np.array([x2 - x1, y2 - y1])


def rescale_faces(faces: Sequence[FaceResult], scale_x: float, scale_y: float) -> list[FaceResult]:
    """``faces`` with boxes and landmarks multiplied by ``scale_x`` and ``scale_y``: into another decode's pixels.

    >>> face = FaceResult((10.0, 20.0, 30.0, 40.0), 0.9, None, {}, (), 3.0)
    >>> rescale_faces([face], 0.5, 0.25)[0].box
    (5.0, 5.0, 15.0, 10.0)
    """
    if (scale_x, scale_y) == (1.0, 1.0):
        return list(faces)
    return [replace(face, box=(face.box[0] * scale_x, face.box[1] * scale_y, face.box[2] * scale_x,
                               face.box[3] * scale_y),
                    landmarks=None if face.landmarks is None else tuple(
                        (x * scale_x, y * scale_y) for x, y in face.landmarks))
            for face in faces]


def _in_full_image(faces: list[FaceResult], array: np.ndarray, size: tuple[int, int]) -> list[FaceResult]:
    """``faces`` found in ``array``, a reduced decode, with boxes and landmarks in the full image's pixels."""
    return rescale_faces(faces, size[0] / array.shape[1], size[1] / array.shape[0])


class Predictor:
    """A loaded model: finds the faces in images and predicts their attributes and beauty.

    Args:
        checkpoint: A checkpoint written by ``tools/train.py`` (``best.pt``), an exported model
            (a ``.safetensors`` with its ``.json`` beside it, or an ``.onnx``, see
            :mod:`faceattr.training.export`), or ``None`` for the default model installed with the
            package; read by :meth:`DeployedModel.load <faceattr.models.deployed.DeployedModel.load>`.
        device: ``"auto"`` (a GPU when there is one), ``"cpu"`` or ``"cuda"``.
        batch_size: Faces per network batch, and images decoded and detected at a time by
            :meth:`predict_many` (its memory does not grow with the number of inputs).
        detector: The face detector; MTCNN on ``device`` when ``None``.
        decision: The decision policy that lists the present attributes: ``balanced``
            (thresholds maximising balanced accuracy: long lists, many false for rare
            attributes), ``f1`` (thresholds maximising F1) or ``probability`` (calibrated
            probability at least ``threshold``); ``None``: the model's default
            (``probability`` when ``threshold`` is given). Exclusive pairs (Bald and Black_Hair,
            No_Beard and Goatee...) are never listed both.
        threshold: The ``probability`` policy's cut-off in (0, 1); ``None``: 0.5.
        max_pixels: Images of more pixels (width x height) are refused from their header,
            before decoding (:data:`~faceattr.image.PREDICTION_MAX_PIXELS`, 64 megapixels,
            by default; ``None``: only PIL's decompression-bomb limit of 89.5 million).
        backend: What runs the network (:mod:`faceattr.inference.backends`): ``torch``, or
            ``onnx`` (ONNX Runtime, ``pip install "faceattr[onnx]"``; a model that is not an
            ``.onnx`` is exported to ONNX in memory as it loads); ``None``: ``onnx`` for an
            ``.onnx`` model, ``torch`` otherwise. Detection, calibration and the decision are
            the same for both.

    Raises:
        CheckpointError: The model file is missing, unreadable, fails its checksum, lacks a
            key or holds an invalid value; or no default model is installed.
        ConfigError: ``batch_size`` or ``max_pixels`` < 1, ``device`` names a GPU that is not there, an
            unknown ``decision``, one the model was not fitted with (a model from before policies has
            ``balanced`` and ``probability`` only), or a ``threshold`` outside (0, 1) or with
            another policy; an unknown ``backend``, or ``onnx`` without its packages.

    >>> predictor = Predictor(device="cpu")  # doctest: +SKIP
    >>> predictor.predict("photo.jpg")[0].beauty  # doctest: +SKIP
    3.41
    """

    def __init__(self, checkpoint: str | Path | None = None, device: str = "auto", batch_size: int = 32,
                 detector: FaceDetector | None = None, decision: str | None = None, threshold: float | None = None,
                 max_pixels: int | None = PREDICTION_MAX_PIXELS, backend: str | None = None):
        if batch_size < 1:
            raise ConfigError(f"batch_size: must be at least 1, got {batch_size}")
        if max_pixels is not None and max_pixels < 1:
            raise ConfigError(f"max_pixels: must be at least 1 or None, got {max_pixels}")
        try:
            chosen = select_device(device)
        except ConfigError as error:
            raise ConfigError(f"device: {device!r} was asked for but no CUDA GPU is available; "
                              "use auto or cpu") from error
        # A named GPU ("cuda:1") is kept as named; select_device picks the first for "cuda".
        self.device = chosen if device in ("auto", "cpu", "cuda") else torch.device(device)
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        deployed = DeployedModel.load(checkpoint)
        self.checkpoint = deployed.source
        #: The decision policy listing each face's present attributes, and its 40 thresholds.
        self.decision = decision or ("probability" if threshold is not None else deployed.default_decision)
        #: Every fitted policy's 40 thresholds by name (``probability`` needs none).
        self.fitted_thresholds = deployed.fitted_thresholds()
        self.thresholds = policy_thresholds(self.decision, self.fitted_thresholds, threshold)
        #: The validation evaluation stored with the model (:mod:`faceattr.evaluation.summary`).
        self.metrics = deployed.metrics
        self.temperatures = np.array(deployed.temperatures)
        self.offsets = np.array(deployed.offsets)
        self.image_size = deployed.image_size
        #: The crop of CelebA's aligned frame the model was trained on, cut from every face.
        self.crop = deployed.crop
        #: ``torch`` or ``onnx``, and the network it runs (a :class:`~faceattr.inference.backends.Network`:
        #: called on uint8 crops, with the ``model_args`` it was built from).
        self.backend, self.model = load_network(deployed, backend, self.device)
        # The transform that evaluation applies to CelebA's aligned images: one function, so the
        # aligned path cannot drift from what the model was trained and scored on.
        self.aligned_transform = eval_transform(self.image_size, self.crop)
        self.detector = detector or FaceDetector("mtcnn", device=str(self.device))
        #: JPEGs are decoded reduced down to this longer side (see :func:`read_reduced`): what the
        #: detector sees is unchanged, and the smallest face it can find still fills the model's input.
        self.decode_side = self.detector.needed_side(CROP_FACE_SHARE * self.image_size)
        # The first forward pass allocates and picks kernels; pay for it here, not on the first image.
        self._run(np.zeros((1, self.image_size, self.image_size, 3), np.uint8))
        logger.info("loaded %s (%s, %d px) on %s with %s", self.checkpoint, deployed.model_args["backbone"],
                    self.image_size, self.device, self.backend)

    def __repr__(self) -> str:
        return (f"Predictor({str(self.checkpoint)!r}, device={str(self.device)!r}, "
                f"batch_size={self.batch_size}, detector={self.detector!r}, decision={self.decision!r}, "
                f"backend={self.backend!r})")

    def predict(self, image: Any, bgr: bool = False) -> list[FaceResult]:
        """The faces in one input, best detector score first.

        Args:
            image: Any input :func:`~faceattr.image.read_image` accepts.
            bgr: An array input is BGR, as OpenCV gives it (``cv2.imread``, ``VideoCapture.read``);
                files, bytes and PIL images ignore it.

        Returns:
            One :class:`FaceResult` per face; ``[]`` if there is none (also for an image too
            small to hold a face the detector can find).

        Raises:
            ImageError: The input cannot be read or is over ``max_pixels`` (the message names it).
        """
        array, size = read_reduced(image, self.decode_side, self.max_pixels, bgr)
        return _in_full_image(self.classify([array], [self.detector.detect(array)])[0], array, size)

    def predict_aligned(self, images: Sequence[Any], bgr: bool = False) -> list[FaceResult]:
        """The attributes of faces already aligned as CelebA's ``img_align_celeba`` crops are.

        No detection: each image is one face, framed as CelebA's aligned images (178x218, or
        any size with that geometry), cut with the model's crop (:attr:`crop`) and resized
        by the evaluation transform, exactly as training and evaluation prepare them.

        Args:
            images: Inputs :func:`~faceattr.image.read_image` accepts.
            bgr: Array inputs are BGR (see :meth:`predict`).

        Returns:
            One :class:`FaceResult` per image, in order: the box is the whole image, the score
            1.0 and the landmarks ``None``.

        Raises:
            ImageError: An input cannot be read (the message names it).

        >>> predictor.predict_aligned(["000001.jpg"])[0].attributes  # doctest: +SKIP
        ('Arched_Eyebrows', 'Attractive', 'Smiling', 'Young')
        """
        return self._aligned_faces([read_image(image, self.max_pixels, bgr) for image in images])

    def _aligned_faces(self, arrays: Sequence[np.ndarray]) -> list[FaceResult]:
        return self._aligned_with_features(arrays, False)[0]

    def _aligned_with_features(self, arrays: Sequence[np.ndarray], with_features: bool
                               ) -> tuple[list[FaceResult], np.ndarray | None]:
        """:meth:`_aligned_faces` and, ``with_features``, their pooled features ``(N, D)`` from the same pass."""
        crops = [self.aligned_transform(Image.fromarray(array)).permute(1, 2, 0).numpy() for array in arrays]
        whole = [Detection((0.0, 0.0, float(a.shape[1]), float(a.shape[0])), 1.0, None) for a in arrays]
        probabilities, beauty, features = self._run_batches(crops, with_features)
        return [self._result(d, p, b) for d, p, b in zip(whole, probabilities, beauty)], features

    def predict_many(self, images: Sequence[Any], aligned: bool = False, bgr: bool = False) -> list[ImageResult]:
        """The faces in each of several inputs, in input order.

        The inputs are read, detected and classified ``batch_size`` images at a time, so memory
        does not grow with their number. An input that cannot be read, or whose detection
        fails, gives an :class:`ImageResult` with ``error`` set; the others are unaffected.
        Detection batches images of equal size, and the faces go through the network
        ``batch_size`` at a time.

        Args:
            images: Inputs :func:`~faceattr.image.read_image` accepts.
            aligned: The inputs are aligned faces, one each (see :meth:`predict_aligned`).
            bgr: Array inputs are BGR (see :meth:`predict`).

        Returns:
            One :class:`ImageResult` per input.

        >>> [r.error for r in predictor.predict_many(["photo.jpg", "missing.jpg"])]  # doctest: +SKIP
        [None, 'missing.jpg: cannot read image: [Errno 2] No such file or directory: ...']
        """
        results: list[ImageResult] = []
        for start in range(0, len(images), self.batch_size):
            results.extend(self._predict_chunk(images[start:start + self.batch_size], aligned, bgr)[0])
        return results

    def embed(self, images: Sequence[Any], aligned: bool = False, normalise: str = "none",
              bgr: bool = False) -> list[ImageEmbeddings]:
        """Each face's embedding (the pooled features both heads read) with its prediction: :meth:`iter_embed`, listed.

        >>> [face.vector.shape for face in predictor.embed(["photo.jpg"], normalise="l2")[0].faces]  # doctest: +SKIP
        [(512,)]
        """
        return list(self.iter_embed(images, aligned, normalise, bgr))

    def iter_embed(self, images: Sequence[Any], aligned: bool = False, normalise: str = "none",
                   bgr: bool = False) -> Iterator[ImageEmbeddings]:
        """The faces of each input with their embeddings, in input order, yielded ``batch_size`` inputs at a time.

        Faces are found and cut as :meth:`predict_many` does (or, ``aligned``, as :meth:`predict_aligned`),
        and each face's vector comes from the same forward pass as its probabilities and beauty
        (:meth:`FaceAttrNet.features <faceattr.models.net.FaceAttrNet.features>`: 512 values for ResNet-18).
        Memory does not grow with the number of inputs: write the results as they come
        (:func:`faceattr.explain.embeddings.write_embeddings`). An embedding does not depend on the batch
        it was computed in (within float32 rounding).

        Args:
            images: Inputs :func:`~faceattr.image.read_image` accepts.
            aligned: The inputs are aligned faces, one each (see :meth:`predict_aligned`).
            normalise: ``none`` (the features as they are), ``l1`` or ``l2`` (each vector scaled to unit L1 or
                L2 norm; see :func:`~faceattr.inference.results.normalised`).
            bgr: Array inputs are BGR (see :meth:`predict`).

        Yields:
            One :class:`~faceattr.inference.results.ImageEmbeddings` per input; an unreadable input has
            ``error`` set and no faces.

        Raises:
            ConfigError: An unknown ``normalise``, or an ``.onnx`` model exported without the features output
                (the message names the file).
        """
        normalised(np.zeros((0, 1)), normalise)  # refused before any work, not at the first chunk
        for start in range(0, len(images), self.batch_size):
            results, features = self._predict_chunk(images[start:start + self.batch_size], aligned, bgr, True)
            vectors, row = normalised(features, normalise), 0
            for result in results:
                faces = [FaceEmbedding(face, vectors[row + k], normalise) for k, face in enumerate(result.faces)]
                row += len(faces)
                yield ImageEmbeddings(result.source, faces, result.error)

    def _predict_chunk(self, images: Sequence[Any], aligned: bool, bgr: bool, with_features: bool = False
                       ) -> tuple[list[ImageResult], np.ndarray | None]:
        """:meth:`predict_many` of at most ``batch_size`` inputs: the only decoded images held at once.

        Returns the results and, ``with_features``, the faces' pooled features ``(F, D)`` in the order of the
        results' faces (else ``None``)."""
        arrays: dict[int, np.ndarray] = {}
        sizes: dict[int, tuple[int, int]] = {}
        errors: dict[int, str] = {}
        for index, image in enumerate(images):
            try:
                # Aligned faces are read whole, as training reads them.
                arrays[index], sizes[index] = read_reduced(image, None if aligned else self.decode_side,
                                                           self.max_pixels, bgr)
            except ImageError as error:
                logger.debug("%s", error)  # the result carries it; callers report it
                errors[index] = str(error)
        if aligned:
            found, features = self._aligned_with_features(list(arrays.values()), with_features)
            faces = {i: [face] for i, face in zip(arrays, found)}
        else:
            detections = self._detect_each(arrays, images, errors)
            classified, features = self._classify(
                [arrays[i] for i in detections], list(detections.values()), with_features)
            faces = {i: _in_full_image(image_faces, arrays[i], sizes[i])
                     for i, image_faces in zip(detections, classified)}
        # Faces are in index order on both paths (dicts keep insertion order), as the features' rows are.
        results = [ImageResult(source_name(image), faces.get(i, []), errors.get(i), *sizes.get(i, (None, None)))
                   for i, image in enumerate(images)]
        return results, features

    def _detect_each(self, arrays: dict[int, np.ndarray], images: Sequence[Any], errors: dict[int, str]
                     ) -> dict[int, list[Detection]]:
        """The faces of each array by index; where detection fails on the batch, one image at a time,
        and an image that fails alone gets an entry in ``errors`` instead of failing the others."""
        try:
            return dict(zip(arrays, self.detector.detect_batch(list(arrays.values()))))
        except (ValueError, RuntimeError) as error:  # torch raises RuntimeError, facenet-pytorch ValueError
            logger.warning("detection of %d images failed (%s); detecting one at a time", len(arrays), error)
        detections = {}
        for i, array in arrays.items():
            try:
                detections[i] = self.detector.detect(array)
            except (ValueError, RuntimeError) as error:
                errors[i] = f"{source_name(images[i])}: face detection failed: {error}"
                logger.debug("%s", errors[i])
        return detections

    def classify(self, arrays: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]]
                 ) -> list[list[FaceResult]]:
        """The attributes of faces already found: for video, where detections are reused across frames.

        Args:
            arrays: RGB uint8 images ``(H, W, 3)``.
            detections: For each image, its faces (from :class:`~faceattr.inference.detect.FaceDetector`
                or tracked from an earlier frame).

        Returns:
            For each image, one :class:`FaceResult` per detection, in the same order. Every
            face of every image goes through the network in batches of ``batch_size``.
        """
        return self._classify(arrays, detections, False)[0]

    def _classify(self, arrays: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]],
                  with_features: bool) -> tuple[list[list[FaceResult]], np.ndarray | None]:
        """:meth:`classify` and, ``with_features``, the faces' pooled features ``(F, D)`` (faces in order)."""
        faces = [(array, _landmarks(d)) for array, found in zip(arrays, detections) for d in found]
        crops = [align_crop(array, points, self.image_size, self.crop) for array, points in faces]
        outside = [crop_outside(array.shape, points, self.image_size, self.crop) for array, points in faces]
        probabilities, beauty, features = self._run_batches(crops, with_features)
        results, row = [], 0
        for found in detections:
            results.append([replace(self._result(d, probabilities[row + k], beauty[row + k]), outside=outside[row + k])
                            for k, d in enumerate(found)])
            row += len(found)
        return results, features

    def _run_batches(self, crops: Sequence[np.ndarray], with_features: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`_run` over ``crops`` ``batch_size`` at a time: probabilities ``(N, 40)``, beauty ``(N,)``, and
        ``with_features`` the pooled features ``(N, D)`` (else ``None``)."""
        outputs = [self._run(np.stack(crops[start:start + self.batch_size]), with_features)
                   for start in range(0, len(crops), self.batch_size)]
        probabilities = np.concatenate([o[0] for o in outputs]) if outputs else np.zeros((0, len(ATTRIBUTES)))
        beauty = np.concatenate([o[1] for o in outputs]) if outputs else np.zeros(0)
        if not with_features:
            return probabilities, beauty, None
        return probabilities, beauty, np.concatenate([o[2] for o in outputs]) if outputs else np.zeros((0, 0))

    def _run(self, crops: np.ndarray, with_features: bool = False
             ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrated probabilities ``(B, 40)`` and clipped beauty ``(B,)`` for uint8 crops ``(B, S, S, 3)``;
        ``with_features``, also the pooled features ``(B, D)`` from the same pass."""
        if with_features:
            logits, beauty, features = self.model.with_features(crops)
        else:
            logits, beauty = self.model(crops)
        # Rounded to float32, the network's precision: float64's further digits would be noise.
        probabilities = apply_calibration(logits, self.temperatures, self.offsets).astype(np.float32)
        scores = probabilities.astype(np.float64), np.clip(beauty, *BEAUTY_RANGE).astype(np.float64)
        return (*scores, features) if with_features else scores

    def resolve_decision(self, decision: str | None = None, threshold: float | None = None) -> tuple[str, np.ndarray]:
        """The policy that ``decision`` and ``threshold`` name, and its 40 thresholds.

        Args:
            decision: A policy, as for :class:`Predictor`; ``None``: this predictor's own, or
                ``probability`` when ``threshold`` is given.
            threshold: The ``probability`` policy's cut-off.

        Raises:
            ConfigError: As :class:`Predictor` for ``decision`` and ``threshold``.
        """
        if decision is None and threshold is None:
            return self.decision, self.thresholds
        decision = decision or "probability"
        return decision, policy_thresholds(decision, self.fitted_thresholds, threshold)

    def with_decision(self, faces: Sequence[FaceResult], decision: str | None = None,
                      threshold: float | None = None) -> list[FaceResult]:
        """``faces`` with their present attributes listed by another decision policy.

        The probabilities are kept: only :attr:`FaceResult.attributes` and ``decision`` change, so one
        prediction can be shown under every policy (the service's ``?decision=``). The arguments
        and errors are :meth:`resolve_decision`'s; with neither, ``faces`` are this predictor's own
        and come back as they are.
        """
        if decision is None and threshold is None:  # listed by this predictor's own policy already
            return list(faces)
        name, thresholds = self.resolve_decision(decision, threshold)
        return [replace(face, attributes=_listed(np.array([face.probabilities[a] for a in ATTRIBUTES]), thresholds),
                        decision=name) for face in faces]

    def _result(self, detection: Detection, probabilities: np.ndarray, beauty: float) -> FaceResult:
        landmarks = None if detection.landmarks is None else tuple(
            (float(x), float(y)) for x, y in detection.landmarks)
        return FaceResult(
            box=tuple(float(v) for v in detection.box), score=float(detection.score), landmarks=landmarks,
            probabilities={name: float(p) for name, p in zip(ATTRIBUTES, probabilities)},
            attributes=_listed(probabilities, self.thresholds), beauty=float(beauty), decision=self.decision)


def _listed(probabilities: np.ndarray, thresholds: np.ndarray) -> tuple[str, ...]:
    """The present attributes of one face's ``(40,)`` probabilities, most probable first."""
    present = decide(probabilities[None, :], thresholds)[0]
    # A stable sort: ties keep ATTRIBUTES order.
    return tuple(ATTRIBUTES[column] for column in sorted(np.flatnonzero(present), key=lambda c: -probabilities[c]))


def load_model(checkpoint: str | Path | None = None, device: str = "auto", decision: str | None = None,
               threshold: float | None = None, backend: str | None = None) -> Predictor:
    """Loads a model for prediction: the installed default, a ``best.pt`` or an exported ``.safetensors`` or ``.onnx``.

    ``decision`` and ``threshold`` choose the decision policy, ``backend`` what runs the network
    (``torch`` or ``onnx``), as for :class:`Predictor`.

    >>> predictor = load_model(device="cpu", decision="probability", threshold=0.6, backend="onnx")  # doctest: +SKIP
    """
    return Predictor(checkpoint, device=device, decision=decision, threshold=threshold, backend=backend)


@lru_cache(maxsize=_CACHE_SIZE)
def _cached_predictor(checkpoint: Path, decision: str | None, threshold: float | None) -> Predictor:
    return load_model(checkpoint, decision=decision, threshold=threshold)


def predict(image: Any, model: str | Path | None = None, aligned: bool = False, decision: str | None = None,
            threshold: float | None = None, bgr: bool = False) -> list[FaceResult] | list[ImageResult]:
    """Predicts the attributes and beauty of the faces in one input or a list of inputs.

    The model of each path is loaded once and kept for later calls. A list is read, detected and
    classified a batch of images at a time: its memory does not grow with its length.

    Args:
        image: An input :func:`~faceattr.image.read_image` accepts, or a list (or tuple) of them.
        model: A ``best.pt`` written by ``tools/train.py`` or a ``.safetensors`` written by
            ``tools/export_model.py``; ``None``: the default model installed with the package.
        aligned: The inputs are faces aligned as CelebA's (see :meth:`Predictor.predict_aligned`):
            no detection, one face each.
        decision: The decision policy listing the present attributes (``balanced``, ``f1`` or
            ``probability``); ``None``: the model's default (see :class:`Predictor`).
        threshold: The ``probability`` policy's cut-off; ``None``: 0.5.
        bgr: Array inputs are BGR, as OpenCV gives them: ``predict(cv2.imread(path), bgr=True)``.
            Files, bytes and PIL images carry their own channel order and ignore it.

    Returns:
        For one input, its faces (:class:`FaceResult`); for a list, one :class:`ImageResult`
        per input.

    Raises:
        CheckpointError: ``model`` is not usable, or is ``None`` and no default model is installed.
        ConfigError: An unknown ``decision``, one the model lacks, or a bad ``threshold``.
        ImageError: A single input cannot be read (in a list, its result carries the error).

    >>> [face.attributes for face in predict("photo.jpg")]  # doctest: +SKIP
    [('Male', 'Smiling', 'Young')]
    """
    predictor = _cached_predictor(DeployedModel.path_of(None) if model is None else Path(model).resolve(),
                                  decision, None if threshold is None else float(threshold))
    if isinstance(image, (list, tuple)):
        return predictor.predict_many(image, aligned=aligned, bgr=bgr)
    return predictor.predict_aligned([image], bgr=bgr) if aligned else predictor.predict(image, bgr=bgr)
