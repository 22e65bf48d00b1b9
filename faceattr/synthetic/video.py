"""Short videos made from still photos: a camera panning across a photo, written as YUV4MPEG2 (``.y4m``).

A ``.y4m`` file is what Chromium's fake camera plays (``--use-file-for-fake-video-capture``), so the
web page's live webcam can be tested with real faces that move. The format is trivial: a header line
``YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg``, then per frame ``FRAME`` and the Y, U and V
planes, full range (JPEG's YCbCr) with the chroma at half size on each side.

>>> photo = np.zeros((60, 100, 3), np.uint8)
>>> frames = pan_frames(photo, (40, 30), (0, 30), count=4)
>>> len(frames), frames[0].shape
(4, (30, 40, 3))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from faceattr.files import open_exclusive
from faceattr.image import check_rgb


def pan_frames(photo: np.ndarray, size: tuple[int, int], x_range: tuple[int, int], count: int,
               crop_width: int | None = None) -> list[np.ndarray]:
    """Frames of a camera panning sideways across ``photo``, each resized to ``size``.

    The crop window (``crop_width`` wide, with ``size``'s aspect ratio, vertically centred) slides
    from left edge ``x_range[0]`` to ``x_range[1]`` in equal steps: where the window moves left,
    the photo's content moves right in the video.

    Args:
        photo: RGB uint8 ``(H, W, 3)``.
        size: ``(width, height)`` of the frames.
        x_range: The window's first and last left edge, in photo pixels.
        count: Number of frames, at least 2.
        crop_width: The window's width in photo pixels; ``size``'s width by default.

    Returns:
        ``count`` RGB uint8 ``(height, width, 3)`` arrays.

    Raises:
        ValueError: ``photo`` is not RGB uint8, ``count`` < 2, or the window leaves the photo.

    >>> frames = pan_frames(np.arange(100, dtype=np.uint8)[None, :, None].repeat(10, 0).repeat(3, 2), (10, 10),
    ...                     (80, 0), count=2)
    >>> int(frames[0][0, 0, 0]), int(frames[1][0, 0, 0])
    (80, 0)
    """
    check_rgb(photo, "photo")
    if count < 2:
        raise ValueError(f"count: must be at least 2, got {count}")
    width, height = size
    crop_width = crop_width or width
    crop_height = round(crop_width * height / width)
    top = (photo.shape[0] - crop_height) // 2
    if top < 0 or min(x_range) < 0 or max(x_range) + crop_width > photo.shape[1]:
        raise ValueError(f"x_range {x_range} with a {crop_width}x{crop_height} window leaves the "
                         f"{photo.shape[1]}x{photo.shape[0]} photo")
    frames = []
    for left in np.linspace(x_range[0], x_range[1], count).round().astype(int):
        window = Image.fromarray(photo[top:top + crop_height, left:left + crop_width])
        frames.append(np.asarray(window.resize(size, Image.Resampling.BILINEAR)))
    return frames


def y4m_frame(frame: np.ndarray) -> bytes:
    """One frame's Y, U and V planes (full range, chroma averaged over 2x2 blocks), as ``.y4m`` stores them.

    >>> len(y4m_frame(np.zeros((4, 6, 3), np.uint8)))  # 4x6 luma + two 2x3 chroma planes
    36
    """
    check_rgb(frame, "frame")
    height, width = frame.shape[:2]
    if width % 2 or height % 2:
        raise ValueError(f"frame: width and height must be even for 4:2:0 chroma, got {width}x{height}")
    # PIL's YCbCr is JPEG's full-range BT.601: the C420jpeg colour space.
    planes = np.asarray(Image.fromarray(frame).convert("YCbCr"), dtype=np.float32)
    chroma = planes[..., 1:].reshape(height // 2, 2, width // 2, 2, 2).mean(axis=(1, 3))
    parts = [planes[..., 0], chroma[..., 0], chroma[..., 1]]
    return b"".join(np.clip(np.rint(part), 0, 255).astype(np.uint8).tobytes() for part in parts)


def write_y4m(path: str | Path, frames: Sequence[np.ndarray], fps: int) -> Path:
    """Writes ``frames`` as a YUV4MPEG2 video (4:2:0, full range), put in place whole (:func:`~faceattr.files.open_exclusive`).

    Args:
        path: The ``.y4m`` file; its folder must exist.
        frames: RGB uint8 arrays, all of one even width and height.
        fps: Frames per second, at least 1.

    Returns:
        ``path``.

    Raises:
        ValueError: No frames, frames of different sizes or odd sides, or ``fps`` < 1.

    >>> import tempfile
    >>> video = write_y4m(Path(tempfile.mkdtemp()) / "still.y4m", [np.zeros((4, 6, 3), np.uint8)] * 2, fps=5)
    >>> video.read_bytes()[:34]
    b'YUV4MPEG2 W6 H4 F5:1 Ip A1:1 C420j'
    """
    if not frames:
        raise ValueError("frames: none to write")
    if fps < 1:
        raise ValueError(f"fps: must be at least 1, got {fps}")
    shapes = {frame.shape for frame in frames}
    if len(shapes) != 1:
        raise ValueError(f"frames: all must have one size, got {sorted(shapes)}")
    height, width = frames[0].shape[:2]
    path = Path(path)
    with open_exclusive(path) as file:
        file.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for frame in frames:
            file.write(b"FRAME\n" + y4m_frame(frame))
    return path
