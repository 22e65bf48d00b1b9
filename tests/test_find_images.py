"""Tests of faceattr.image.find_images: deep folders, symbolic links and folders left out."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from faceattr.image import find_images


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_a_folder_nested_a_thousand_levels_deep_is_searched(tmp_path: Path) -> None:
    deepest = str(tmp_path / "root")
    os.mkdir(deepest)
    for _ in range(1000):  # os.makedirs itself recurses once per level
        deepest = os.path.join(deepest, "d")
        os.mkdir(deepest)
    image = Path(deepest) / "x.jpg"
    image.write_bytes(b"")
    try:
        assert find_images([tmp_path / "root"]) == ([image], [])
    finally:  # pytest's clean-up of old temporary folders recurses too: leave it nothing this deep
        image.unlink()
        while deepest != str(tmp_path):
            os.rmdir(deepest)
            deepest = os.path.dirname(deepest)


def test_a_linked_subfolder_is_followed_and_a_loop_is_cut_with_a_warning(tmp_path: Path, caplog) -> None:
    outside = touch(tmp_path / "elsewhere" / "b.jpg").parent
    root = tmp_path / "photos"
    own = touch(root / "a.jpg")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="faceattr.image"):
        images, missing = find_images([root])
    assert (images, missing) == ([own, root / "linked" / "b.jpg"], [])
    assert f"{root / 'loop'}: skipped, a link to a folder already searched" in caplog.text


def test_an_excluded_folder_is_left_out_wherever_it_is_reached(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    own = touch(root / "a.jpg")
    touch(root / "annotated" / "a.jpg")
    (root / "again").symlink_to(root / "annotated", target_is_directory=True)
    assert find_images([root], exclude=[root / "annotated"]) == ([own], [])
