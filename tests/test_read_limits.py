"""Tests of the size limits of faceattr.image's readers: PIL's bomb limit from threads, the prediction limit."""

from __future__ import annotations

import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceattr.errors import ImageError
from faceattr.image import PREDICTION_MAX_PIXELS, load_image, read_image, read_reduced


def png_header(width: int, height: int) -> bytes:
    """A PNG of signature, IHDR (8-bit RGB, ``width`` x ``height``) and IEND only: no pixel data at all."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


#: 96 megapixels: over PIL's limit (89.5 million) but under twice it, where PIL only warns.
BOMB = (10_000, 9_600)


def test_header_only_bomb_is_refused_from_eight_threads_every_time(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(*BOMB))
    data = path.read_bytes()
    readers = [lambda: read_image(path), lambda: read_image(data), lambda: load_image(path),
               lambda: read_reduced(data, 1024), lambda: read_image(Image.open(io.BytesIO(data)))]

    def attempt(number: int) -> str:
        try:
            readers[number % len(readers)]()
        except ImageError as error:
            return str(error)
        return "read"

    with ThreadPoolExecutor(8) as pool:
        messages = list(pool.map(attempt, range(400)))
    # Refused from the header for the size, never decoded (which here would fail as truncated instead).
    assert all("10000x9600 image (96,000,000 pixels) is over the decompression-bomb limit" in m
               for m in messages), {m for m in messages}


def test_prediction_limit_refuses_each_kind_of_input_naming_it_and_both_sizes(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (40, 30)).save(path)
    for source, name in [(path, str(path)), (path.read_bytes(), "<bytes>"), (Image.open(path), "<PIL image>"),
                         (np.zeros((30, 40, 3), np.uint8), "<array>")]:
        with pytest.raises(ImageError) as caught:
            read_image(source, max_pixels=1199)
        assert str(caught.value) == (f"{name}: 40x30 image (1,200 pixels) is over the prediction limit "
                                     "(max_pixels) of 1,199 pixels")
        assert read_image(source, max_pixels=1200).shape == (30, 40, 3)


def test_prediction_limit_is_below_pils_bomb_limit() -> None:
    assert 50_000_000 < PREDICTION_MAX_PIXELS < Image.MAX_IMAGE_PIXELS


def test_bgr_arrays_are_flipped_and_other_inputs_ignore_the_flag() -> None:
    bgr = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    rgb = read_image(bgr, bgr=True)
    assert rgb.flags.c_contiguous and np.array_equal(rgb, bgr[..., ::-1])
    gray = np.arange(30, dtype=np.uint8).reshape(6, 5)
    assert np.array_equal(read_image(gray, bgr=True), read_image(gray))
    picture = Image.fromarray(bgr)
    assert np.array_equal(read_image(picture, bgr=True), bgr)  # a PIL image is RGB by definition
    with pytest.raises(ImageError, match="<array>: expected shape"):
        read_image(np.zeros((4, 4, 4), np.uint8), bgr=True)
