"""Tests of faceattr.data.dataset: image decoding, the sample dict, skipping bad images, label stacks."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from faceattr.attributes import NUM_ATTRIBUTES
from faceattr.data.dataset import FaceDataset, collate_skipping_none, labels_matrix
from faceattr.data.records import FaceRecord
from faceattr.data.transforms import eval_transform
from faceattr.errors import ConfigError, ImageError
from faceattr.image import load_image

SIZE = 16


def save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def attribute_record(path: Path, known: int = NUM_ATTRIBUTES) -> FaceRecord:
    """A CelebA-like record: attributes alternate 1/0, the first ``known`` of them known."""
    attributes = (np.arange(NUM_ATTRIBUTES) % 2 == 0).astype(np.float32)
    mask = np.arange(NUM_ATTRIBUTES) < known
    return FaceRecord(path, "train", f"id:{path.stem}", "celeba", attributes, mask)


def beauty_record(path: Path, beauty: float = 3.25) -> FaceRecord:
    return FaceRecord(path, "train", f"scut:{path.stem}", "scut", beauty=beauty)


# --- load_image ---------------------------------------------------------------------------

def test_load_image_composites_transparent_rgba_over_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    image.putpixel((1, 1), (200, 10, 20, 255))
    loaded = load_image(save(image, tmp_path / "a.png"))
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert loaded.getpixel((1, 1)) == (200, 10, 20)


def test_load_image_expands_grayscale(tmp_path: Path) -> None:
    loaded = load_image(save(Image.new("L", (3, 5), 77), tmp_path / "g.png"))
    assert loaded.mode == "RGB" and loaded.size == (3, 5) and loaded.getpixel((2, 4)) == (77, 77, 77)


def test_load_image_resolves_palette_colours(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 30, 140, 220] + [0] * (256 * 3 - 6))
    assert load_image(save(image, tmp_path / "p.png")).getpixel((0, 0)) == (30, 140, 220)


def test_load_image_converts_cmyk_jpeg(tmp_path: Path) -> None:
    red = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    pixel = np.array(load_image(save(red, tmp_path / "c.jpg", quality=95)), dtype=int)[8, 8]
    assert np.abs(pixel - [255, 0, 0]).max() <= 8


def test_load_image_scales_16_bit_png_instead_of_clipping(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16)
    loaded = load_image(save(Image.fromarray(values), tmp_path / "d.png"))
    assert np.array(loaded)[0, :, 0].tolist() == [0, 64, 128, 255]


def test_load_image_applies_exif_orientation(tmp_path: Path) -> None:
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 10, 10))  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    loaded = load_image(save(stored, tmp_path / "r.jpg", exif=exif.tobytes(), quality=95))
    assert loaded.size == (20, 40)
    red, green, blue = loaded.getpixel((15, 5))  # top-left went to top-right
    assert red > 200 and blue < 60


def test_load_image_returns_a_decoded_copy(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (6, 6), (1, 2, 3)), tmp_path / "x.png")
    loaded = load_image(path)
    path.unlink()
    assert loaded.getpixel((5, 5)) == (1, 2, 3)


@pytest.mark.parametrize("content", [b"", b"not an image at all"], ids=["empty", "text"])
def test_load_image_rejects_non_images_naming_the_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match="broken.jpg"):
        load_image(path)


def test_load_image_rejects_truncated_jpeg(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = save(Image.fromarray(noise), tmp_path / "whole.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg"):
        load_image(path)


def test_load_image_rejects_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="nowhere.png"):
        load_image(tmp_path / "nowhere.png")


# --- FaceDataset --------------------------------------------------------------------------

@pytest.fixture
def image_path(tmp_path: Path) -> Path:
    return save(Image.new("RGB", (20, 24), (90, 120, 150)), tmp_path / "face.png")


def test_sample_has_the_batch_convention_keys_dtypes_and_shapes(image_path: Path) -> None:
    sample = FaceDataset([attribute_record(image_path)], eval_transform(SIZE, None))[0]
    assert set(sample) == {"image", "attributes", "attribute_mask", "beauty", "beauty_mask"}
    assert sample["image"].shape == (3, SIZE, SIZE) and sample["image"].dtype == torch.uint8
    assert sample["attributes"].shape == (NUM_ATTRIBUTES,) and sample["attributes"].dtype == torch.float32
    assert sample["attribute_mask"].shape == (NUM_ATTRIBUTES,) and sample["attribute_mask"].dtype == torch.bool
    assert sample["beauty"].shape == () and sample["beauty"].dtype == torch.float32
    assert sample["beauty_mask"].shape == () and sample["beauty_mask"].dtype == torch.bool


def test_attribute_only_record_masks_beauty_and_zeroes_unknown_attributes(image_path: Path) -> None:
    sample = FaceDataset([attribute_record(image_path, known=10)], eval_transform(SIZE, None))[0]
    assert sample["attribute_mask"].tolist() == [True] * 10 + [False] * 30
    assert sample["attributes"][:10].tolist() == [1.0, 0.0] * 5
    assert not sample["attributes"][10:].any()
    assert sample["beauty"].item() == 0.0 and not sample["beauty_mask"]


def test_beauty_only_record_masks_all_attributes(image_path: Path) -> None:
    sample = FaceDataset([beauty_record(image_path, 3.25)], eval_transform(SIZE, None))[0]
    assert sample["beauty"].item() == 3.25 and sample["beauty_mask"]
    assert not sample["attribute_mask"].any() and not sample["attributes"].any()


def test_dataset_mixes_both_kinds_in_one_batch(image_path: Path) -> None:
    dataset = FaceDataset([attribute_record(image_path), beauty_record(image_path)], eval_transform(SIZE, None))
    batch = collate_skipping_none([dataset[0], dataset[1]])
    assert batch["image"].shape == (2, 3, SIZE, SIZE)
    assert batch["beauty_mask"].tolist() == [False, True]
    assert batch["attribute_mask"].any(dim=1).tolist() == [True, False]


def test_bad_image_raises_naming_the_file_in_error_mode(image_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"")
    dataset = FaceDataset([beauty_record(image_path), beauty_record(bad)], eval_transform(SIZE, None))
    with pytest.raises(ImageError, match="corrupt.jpg"):
        dataset[1]


def test_bad_image_is_skipped_with_a_warning_in_skip_mode(image_path: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 junk")
    dataset = FaceDataset([beauty_record(image_path), beauty_record(bad)], eval_transform(SIZE, None), "skip")
    with caplog.at_level(logging.WARNING, logger="faceattr.data.dataset"):
        assert dataset[1] is None
    assert "corrupt.jpg" in caplog.text
    batch = collate_skipping_none([dataset[0], dataset[1]])
    assert batch["image"].shape[0] == 1


def test_collate_of_only_skipped_samples_is_none() -> None:
    assert collate_skipping_none([None, None]) is None


def test_unknown_bad_sample_mode_is_rejected() -> None:
    with pytest.raises(ConfigError, match="on_bad_sample"):
        FaceDataset([], eval_transform(SIZE, None), "ignore")


# --- labels_matrix ------------------------------------------------------------------------

def test_labels_matrix_stacks_labels_and_masks(tmp_path: Path) -> None:
    records = [attribute_record(tmp_path / "a.jpg", known=3), beauty_record(tmp_path / "b.jpg")]
    labels, mask = labels_matrix(records)
    assert labels.dtype == np.float32 and mask.dtype == bool and labels.shape == mask.shape == (2, NUM_ATTRIBUTES)
    assert mask.sum(axis=1).tolist() == [3, 0]
    assert labels[0, :3].tolist() == [1.0, 0.0, 1.0] and labels[0, 3:].sum() == 0 and labels[1].sum() == 0
