"""Tests of faceattr.image.find_images: deep folders, symbolic links and folders left out."""

from __future__ import annotations

import inspect
import logging
import sys
from pathlib import Path

from faceattr.image import find_images


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_a_folder_nested_deeper_than_the_recursion_limit_is_searched(tmp_path: Path) -> None:
    deepest = tmp_path / "root"
    deepest.mkdir()
    for _ in range(300):  # os.makedirs itself recurses once per level
        deepest = deepest / "d"
        deepest.mkdir()
    image = deepest / "x.jpg"
    image.write_bytes(b"")
    # Python's limit lowered below the folder's depth (1,000 levels cost seconds to build on some
    # file systems, and pytest's clean-up cannot remove them): a search that recurses once per
    # level fails as it would at 1,000 levels under the usual limit.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + 150)
    try:
        found = find_images([tmp_path / "root"])
    finally:
        sys.setrecursionlimit(limit)
    assert found == ([image], [])


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
