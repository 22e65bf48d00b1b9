"""Reading images: any input (path, bytes, PIL image, array) as an upright RGB uint8 image.

Used by training (:func:`load_image`) and prediction (:func:`read_image`, :func:`read_reduced`)
alike, so that both see the same pixels: EXIF orientation applied, every PIL mode converted
to 8-bit RGB, transparency shown over white, corrupt files and decompression bombs refused
with an :class:`~faceattr.errors.ImageError` naming the input. Also the small helpers
around them: the one RGB-array check (:func:`check_rgb`), the pixel box of a fractional
crop (:func:`crop_box`) and the expansion of paths into image files (:func:`find_images`).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from faceattr.errors import ConfigError, ImageError

logger = logging.getLogger(__name__)

#: The default largest image, in pixels (width x height), that prediction reads: below PIL's
#: decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, 89.5 million), because a large
#: non-JPEG is decoded at full size and converted (an 88-megapixel 16-bit PNG peaked at 3.2 GB);
#: it holds a 64-megapixel phone photo (9248x6936). ``Predictor(max_pixels=...)`` changes it.
PREDICTION_MAX_PIXELS = 64 * 2**20

#: The file extensions taken as images when a folder is searched (any case).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})

#: Modes holding more than 8 bits per pixel, which PIL's ``convert("RGB")`` clips rather
#: than scales; their full range is mapped onto 0-255.
_HIGH_DEPTH_MAX = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}

#: Transparent pixels are shown over white, as image viewers do; their stored colour is
#: arbitrary (often black) and would otherwise leak into the input.
_BACKGROUND = (255, 255, 255)


#: The formats an upload to a web app may be, sniffed from its bytes (PIL's magic numbers), never from
#: a file name; and how a refusal names them.
UPLOAD_FORMATS: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"})
UPLOAD_FORMAT_NAMES = "JPEG, PNG, WebP, BMP, GIF, TIFF"


def image_header(data: bytes) -> tuple[str | None, tuple[int, int]]:
    """The format and size an upload's header declares, nothing decoded: ``(None, (0, 0))`` for bytes
    that are not an image of :data:`UPLOAD_FORMATS`.

    Raises:
        PIL.Image.DecompressionBombError: The header claims over twice PIL's pixel limit.

    >>> image_header(b"hello")
    (None, (0, 0))
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, size = image.format, image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None, (0, 0)
    return (kind, size) if kind in UPLOAD_FORMATS else (None, (0, 0))


def to_rgb(image: Image.Image) -> Image.Image:
    """Converts any PIL mode to RGB: alpha composited over white, 16-bit scaled to 8-bit."""
    if image.mode == "F":
        raise ValueError("32-bit floating-point images have no defined range; save it as 8 or 16 bits")
    if image.mode in _HIGH_DEPTH_MAX:
        # PNG stores 16-bit grayscale in "I;16" or "I"; 32-bit "I" data beyond 16 bits clips.
        values = np.asarray(image, dtype=np.float64) * (255.0 / _HIGH_DEPTH_MAX[image.mode])
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


#: EXIF orientations that turn the stored image by 90 degrees (width and height swap).
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


def source_name(source: Any) -> str:
    """How results and errors name an input: its path, or ``"<array>"``, ``"<bytes>"``, ``"<PIL image>"``.

    >>> source_name(b"..."), source_name(Path("a.jpg"))
    ('<bytes>', 'a.jpg')
    """
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, Image.Image):
        return "<PIL image>"
    if isinstance(source, np.ndarray):
        return "<array>"
    return f"<{type(source).__name__}>"


def _check_pixels(name: str, size: tuple[int, int], max_pixels: int | None) -> None:
    """Refuses an image over PIL's decompression-bomb limit or over ``max_pixels``, before it is decoded.

    A plain comparison, not PIL's ``DecompressionBombWarning`` turned into an error: changing
    warning filters (``warnings.catch_warnings``) is not thread-safe, and from threads it let
    bombs through.
    """
    width, height = size
    limits = [(limit, what) for limit, what in ((Image.MAX_IMAGE_PIXELS, "decompression-bomb limit"),
                                                (max_pixels, "prediction limit (max_pixels)"))
              if limit is not None]
    for limit, what in sorted(limits, key=lambda item: item[0]):
        if width * height > limit:
            raise ImageError(f"{name}: {width}x{height} image ({width * height:,} pixels) is over the {what} "
                             f"of {limit:,} pixels")


def open_image(file: str | Path | io.BytesIO, name: str, min_side: int | None = None,
               max_pixels: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Decodes an image file to upright RGB, JPEGs reduced while their longer side stays >= ``min_side``.

    Returns the decoded image and the full upright size ``(width, height)``. An image over PIL's
    decompression-bomb limit or over ``max_pixels`` is refused from its header, before any
    decoding: in training data as in a prediction service.
    """
    try:
        with Image.open(file) as image:
            width, height = image.size
            _check_pixels(name, (width, height), max_pixels)
            if min_side is not None and max(width, height) > min_side:
                ratio = min_side / max(width, height)
                # JPEG only (other formats ignore it): libjpeg scales by 1/2, 1/4 or 1/8 inside
                # its inverse DCT, the largest reduction that keeps the size asked for.
                image.draft(image.mode, (math.ceil(width * ratio), math.ceil(height * ratio)))
            image.load()  # decode now: a truncated file fails here
            if image.getexif().get(ExifTags.Base.Orientation, 1) in _SWAPPING_ORIENTATIONS:
                width, height = height, width
            return to_rgb(ImageOps.exif_transpose(image)), (width, height)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        if isinstance(error, ImageError):  # already names the input (it is a ValueError too)
            raise
        # PIL reports corrupt data as OSError, SyntaxError or ValueError depending on the codec;
        # over twice its pixel limit, Image.open itself raises DecompressionBombError.
        raise ImageError(f"{name}: cannot read image: {error}") from error


def crop_box(size: tuple[int, int], crop: Sequence[float] | None) -> tuple[int, int, int, int]:
    """The pixel box that the fractional crop ``[left, top, right, bottom]`` cuts from an image.

    Args:
        size: ``(width, height)`` of the image, as PIL's ``Image.size`` gives it.
        crop: Fractions of the width (left, right) and height (top, bottom), or ``None``
            for the whole image.

    Returns:
        ``(left, top, right, bottom)`` in pixels, for ``Image.crop``; at least one pixel wide
        and high.

    Raises:
        ConfigError: If ``crop`` is not four fractions with left < right and top < bottom.

    >>> crop_box((178, 218), [0.0, 0.1, 1.0, 0.9])
    (0, 22, 178, 196)
    >>> crop_box((64, 64), None)
    (0, 0, 64, 64)
    """
    width, height = size
    if crop is None:
        return 0, 0, width, height
    if not (len(crop) == 4 and 0 <= crop[0] < crop[2] <= 1 and 0 <= crop[1] < crop[3] <= 1):
        raise ConfigError(f"crop: expected [left, top, right, bottom] fractions with left < right "
                          f"and top < bottom, got {list(crop)}")
    left, right = round(crop[0] * width), round(crop[2] * width)
    top, bottom = round(crop[1] * height), round(crop[3] * height)
    # A thin crop of a tiny image can round to zero pixels; keep at least one.
    return left, top, max(right, left + 1), max(bottom, top + 1)


def check_rgb(image: Any, name: str = "image", error: type[Exception] = ValueError) -> np.ndarray:
    """Checks that ``image`` is an RGB uint8 numpy array ``(H, W, 3)`` with H, W > 0.

    The one check of every function that takes a decoded image (detection, alignment,
    annotation, video frames, :func:`read_image` on arrays).

    Args:
        image: The value to check.
        name: How the error message names it (``"images[2]"`` in a batch).
        error: The exception class raised, so that each caller keeps its own
            (:class:`~faceattr.errors.AlignmentError`, :class:`~faceattr.errors.ImageError`).

    Returns:
        ``image`` itself.

    Raises:
        ValueError: (or ``error``) If it is not a numpy array, not uint8 or not ``(H, W, 3)``.

    >>> check_rgb(np.zeros((4, 4, 3), np.uint8)).shape
    (4, 4, 3)
    >>> check_rgb(np.zeros((4, 4), np.uint8), "frame")
    Traceback (most recent call last):
    ...
    ValueError: frame: expected shape (H, W, 3) (RGB), got (4, 4)
    """
    if not isinstance(image, np.ndarray):
        raise error(f"{name}: expected an RGB uint8 numpy array (H, W, 3), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise error(f"{name}: expected dtype uint8 (RGB 0-255), got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise error(f"{name}: expected shape (H, W, 3) (RGB), got {image.shape}")
    return image


def _from_array(array: np.ndarray, bgr: bool = False) -> np.ndarray:
    """An RGB (or, with ``bgr``, BGR) ``(H, W, 3)`` or grayscale ``(H, W)`` uint8 array as contiguous RGB."""
    if array.ndim == 2 and array.dtype == np.uint8:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif bgr:
        array = check_rgb(array, "<array>", ImageError)[..., ::-1]
    check_rgb(array, "<array>", ImageError)
    # Contiguous: a BGR->RGB view (frame[..., ::-1]) has negative strides, which cv2 and torch refuse.
    return np.ascontiguousarray(array)


def read_image(source: str | Path | bytes | Image.Image | np.ndarray, max_pixels: int | None = None,
               bgr: bool = False) -> np.ndarray:
    """Reads any supported input as an upright RGB uint8 array ``(H, W, 3)``.

    Files and bytes are decoded by content, not by extension, and turned upright per their
    EXIF orientation; grayscale, palette, CMYK and 16-bit images become 8-bit RGB and
    transparent pixels are shown over white. Arrays are RGB unless ``bgr`` says they are in
    OpenCV's order (``cv2.imread``, ``VideoCapture.read``).

    Args:
        source: A path, the bytes of an image file, a PIL image, or a uint8 numpy array,
            RGB ``(H, W, 3)`` or grayscale ``(H, W)``.
        max_pixels: Refuse images of more pixels (width x height) than this, from the file's
            header, before decoding; ``None``: only PIL's decompression-bomb limit.
        bgr: A ``(H, W, 3)`` array is BGR, as OpenCV gives it; files, bytes and PIL images
            carry their own channel order and ignore it.

    Returns:
        The RGB image, a new array independent of ``source`` for files, bytes and PIL images.

    Raises:
        ImageError: The input is missing, empty, truncated, not an image, a decompression
            bomb, over ``max_pixels`` or an array of the wrong shape or type; the message
            names the input.

    >>> read_image(np.zeros((4, 5), np.uint8)).shape
    (4, 5, 3)
    >>> read_image(np.array([[[0, 0, 255]]], np.uint8), bgr=True).tolist()
    [[[255, 0, 0]]]
    >>> read_image(b"")
    Traceback (most recent call last):
    ...
    faceattr.errors.ImageError: <bytes>: cannot read image: empty input
    """
    return read_reduced(source, None, max_pixels, bgr)[0]


def read_reduced(source: str | Path | bytes | Image.Image | np.ndarray, min_side: int | None,
                 max_pixels: int | None = None, bgr: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """Reads an input as :func:`read_image` does, decoding large JPEGs at a reduced size.

    A JPEG file or bytes whose longer side exceeds ``min_side`` is decoded at 1/2, 1/4 or 1/8
    of its size (the smallest that keeps the longer side at least ``min_side``), inside
    libjpeg's inverse DCT: a 4000x3000 photo decodes about 6x faster at 1/2. EXIF orientation
    is applied after the reduction. Other inputs are read at full size.

    Args:
        source: Any input :func:`read_image` accepts.
        min_side: Smallest longer side of the result; ``None`` always decodes at full size.
        max_pixels: As :func:`read_image`.
        bgr: As :func:`read_image`.

    Returns:
        The upright RGB array, and the upright size ``(width, height)`` of the full image:
        multiply the array's pixel coordinates by ``width / array.shape[1]`` and
        ``height / array.shape[0]`` to get the full image's.

    Raises:
        ImageError: As :func:`read_image`.

    >>> import io
    >>> photo = io.BytesIO()
    >>> Image.new("RGB", (4000, 3000)).save(photo, "JPEG")
    >>> array, size = read_reduced(photo.getvalue(), 1024)
    >>> array.shape, size
    ((1500, 2000, 3), (4000, 3000))
    """
    name = source_name(source)
    if isinstance(source, (str, Path)):
        image, size = open_image(source, name, min_side, max_pixels)
        return np.asarray(image), size
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError(f"{name}: cannot read image: empty input")
        image, size = open_image(io.BytesIO(source), name, min_side, max_pixels)
        return np.asarray(image), size
    if isinstance(source, Image.Image):
        _check_pixels(name, source.size, max_pixels)  # an opened PIL image may not be decoded yet
        try:
            array = np.asarray(to_rgb(ImageOps.exif_transpose(source)))
        except (OSError, ValueError, SyntaxError) as error:
            raise ImageError(f"{name}: cannot convert image: {error}") from error
    elif isinstance(source, np.ndarray):
        if source.ndim >= 2:
            _check_pixels(name, (source.shape[1], source.shape[0]), max_pixels)
        array = _from_array(source, bgr)
    else:
        raise ImageError(f"{name}: expected a path, bytes, a PIL image or a numpy array")
    return array, (array.shape[1], array.shape[0])


def load_image(path: str | Path) -> Image.Image:
    """Reads an image file as a fully decoded RGB PIL image, upright per its EXIF orientation.

    Grayscale, palette, CMYK and 16-bit images are converted to 8-bit RGB; transparent
    pixels are composited over white.

    Args:
        path: The image file.

    Returns:
        An RGB image, decoded and independent of the file.

    Raises:
        ImageError: If the file is missing, empty, truncated, not an image or in a mode
            that cannot be converted; the message names the path.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "g.png")
    >>> Image.new("L", (5, 4), 128).save(f)
    >>> image = load_image(f)
    >>> image.mode, image.size, image.getpixel((0, 0))
    ('RGB', (5, 4), (128, 128, 128))
    """
    return open_image(path, str(path))[0]


def find_images(paths: Iterable[str | Path], exclude: Iterable[str | Path] = ()) -> tuple[list[Path], list[str]]:
    """Expands the command line's paths into image files.

    A file is taken whatever its extension (the user named it); a folder contributes the files
    inside it, at any depth and sorted, whose extension is in :data:`IMAGE_EXTENSIONS`
    (case-insensitive). Links to files and folders are followed; a link back to a folder already
    searched from the same path (a loop) is skipped with a warning naming it, and so is a
    broken link with an image extension.

    Args:
        paths: Files and folders.
        exclude: Folders left out of the search wherever they are reached, through links too
            (the command's own output folder inside an input folder).

    Returns:
        The image files, in command-line order, and one message per path that does not exist.

    >>> find_images(["no/such/photo.jpg"])
    ([], ['no/such/photo.jpg: no such file or folder'])
    """
    excluded = {_folder_key(folder) for folder in map(Path, exclude) if folder.is_dir()}
    images: list[Path] = []
    missing: list[str] = []
    for path in map(Path, paths):
        if path.is_dir():
            images.extend(sorted(_images_below(path, excluded)))
        elif path.is_file():
            images.append(path)
        else:
            missing.append(f"{path}: no such file or folder")
    return images, missing


def _folder_key(folder: Path) -> tuple[int, int]:
    """What identifies a folder however it is reached (through links, ``..``, bind mounts)."""
    status = folder.stat()
    return status.st_dev, status.st_ino


def _images_below(root: Path, excluded: set[tuple[int, int]]) -> list[Path]:
    """The image files under ``root``, unsorted; an explicit stack, so no depth is too deep."""
    images: list[Path] = []
    searched: set[tuple[int, int]] = set()
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            key = _folder_key(folder)
            if key in excluded:
                continue
            if key in searched:
                logger.warning("%s: skipped, a link to a folder already searched", folder)
                continue
            searched.add(key)
            entries = list(folder.iterdir())
        except OSError as error:
            logger.warning("%s: skipped, cannot be searched (%s)", folder, error.strerror or error)
            continue
        for entry in entries:
            if entry.is_dir():
                folders.append(entry)
            elif entry.suffix.lower() in IMAGE_EXTENSIONS:
                if entry.is_file():
                    images.append(entry)
                elif entry.is_symlink():
                    logger.warning("%s: skipped, a broken link", entry)
    return images
