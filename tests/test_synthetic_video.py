"""Videos from still photos (:mod:`faceattr.synthetic.video`): the pan, and the ``.y4m`` Chromium's fake camera plays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceattr.synthetic.video import pan_frames, write_y4m, y4m_frame


def test_y4m_has_the_header_and_one_full_range_420_frame_per_picture(tmp_path: Path) -> None:
    red = np.zeros((4, 6, 3), np.uint8)
    red[..., 0] = 255
    white = np.full((4, 6, 3), 255, np.uint8)
    data = write_y4m(tmp_path / "clip.y4m", [red, white], fps=15).read_bytes()
    header, _, rest = data.partition(b"\n")
    assert header == b"YUV4MPEG2 W6 H4 F15:1 Ip A1:1 C420jpeg"
    frames = rest.split(b"FRAME\n")
    assert frames[0] == b"" and len(frames) == 3 and all(len(frame) == 6 * 4 + 2 * 3 * 2 for frame in frames[1:])
    # JPEG's YCbCr of pure red and white: (76, 85, 255) and (255, 128, 128), to PIL's rounding.
    red_planes, white_planes = (np.frombuffer(frame, np.uint8).astype(int) for frame in frames[1:])
    assert np.abs(red_planes - np.repeat([76, 85, 255], [24, 6, 6])).max() <= 1
    assert np.abs(white_planes - np.repeat([255, 128, 128], [24, 6, 6])).max() <= 1


def test_chroma_is_the_mean_of_each_2x2_block() -> None:
    half = np.zeros((2, 2, 3), np.uint8)
    half[0] = (0, 0, 255)  # top row blue (Cb 255), bottom row black (Cb 128)
    assert abs(y4m_frame(half)[4] - (255 + 128) / 2) <= 1


def test_odd_sides_frames_of_two_sizes_and_no_frames_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        y4m_frame(np.zeros((3, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="one size"):
        write_y4m(tmp_path / "a.y4m", [np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2, 3), np.uint8)], fps=5)
    with pytest.raises(ValueError, match="none"):
        write_y4m(tmp_path / "b.y4m", [], fps=5)
    assert not list(tmp_path.iterdir())


def test_the_pan_moves_the_content_against_the_window() -> None:
    photo = np.zeros((40, 100, 3), np.uint8)
    photo[:, 70:72] = 255  # a white stripe
    frames = pan_frames(photo, (20, 20), (60, 52), count=3)
    stripe = [int(np.flatnonzero(frame[10, :, 0] > 128)[0]) for frame in frames]
    assert stripe == [10, 14, 18]
    with pytest.raises(ValueError, match="leaves"):
        pan_frames(photo, (20, 20), (0, 90), count=2)
