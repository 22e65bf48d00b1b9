"""Tests of faceattr.data.transforms: crop boxes, output shape and dtype, seeded randomness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from faceattr.data.transforms import (
    ERASING_FILL,
    CropResize,
    augment_batch,
    crop_box,
    erase_batch,
    eval_transform,
    train_transform,
)
from faceattr.errors import ConfigError


def gradient_image(width: int = 48, height: int = 60) -> Image.Image:
    """An RGB image whose every pixel differs, so crops and flips show."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels)


def test_crop_box_converts_fractions_to_pixels() -> None:
    assert crop_box((200, 100), [0.1, 0.2, 0.9, 0.8]) == (20, 20, 180, 80)


def test_crop_box_none_is_the_whole_image() -> None:
    assert crop_box((37, 53), None) == (0, 0, 37, 53)


def test_crop_box_keeps_at_least_one_pixel() -> None:
    left, top, right, bottom = crop_box((4, 4), [0.5, 0.5, 0.55, 0.55])
    assert right - left == 1 and bottom - top == 1


@pytest.mark.parametrize("crop", [[0.5, 0.0, 0.4, 1.0], [0.0, 0.0, 1.0], [0.0, -0.1, 1.0, 1.0], [0, 0, 1, 1.2]])
def test_crop_box_rejects_bad_fractions(crop: list[float]) -> None:
    with pytest.raises(ConfigError, match="crop"):
        crop_box((10, 10), crop)


def test_bad_crop_fails_when_the_transform_is_built() -> None:
    with pytest.raises(ConfigError, match="crop"):
        eval_transform(16, [0.9, 0.0, 0.1, 1.0])


@pytest.mark.parametrize("make", [eval_transform, train_transform])
def test_transform_gives_square_uint8_tensor(make) -> None:
    out = make(24, [0.1, 0.1, 0.9, 0.9])(gradient_image())
    assert type(out) is torch.Tensor
    assert out.shape == (3, 24, 24) and out.dtype == torch.uint8


def test_eval_transform_keeps_the_colours() -> None:
    colour = (10, 128, 250)
    out = eval_transform(8, None)(Image.new("RGB", (20, 30), colour))
    assert out.float().mean(dim=(1, 2)).tolist() == list(map(float, colour))


def test_eval_transform_cuts_the_crop_before_resizing() -> None:
    image = Image.new("RGB", (40, 40), (0, 0, 0))
    image.paste((255, 255, 255), (20, 0, 40, 40))  # right half white
    out = eval_transform(8, [0.5, 0.0, 1.0, 1.0])(image)
    assert torch.equal(out[0], torch.full((8, 8), 255, dtype=torch.uint8))


def test_eval_transform_is_deterministic() -> None:
    transform = eval_transform(16, [0.0, 0.1, 1.0, 0.9])
    assert torch.equal(transform(gradient_image()), transform(gradient_image()))


def test_train_transform_is_random() -> None:
    transform = train_transform(16, None)
    torch.manual_seed(0)
    outputs = [transform(gradient_image()) for _ in range(3)]
    assert not torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[1], outputs[2])


def test_train_transform_is_reproducible_with_a_seed() -> None:
    transform = train_transform(16, [0.05, 0.05, 0.95, 0.95])
    torch.manual_seed(3)
    first = [transform(gradient_image()) for _ in range(3)]
    torch.manual_seed(3)
    second = [transform(gradient_image()) for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_train_transform_without_augment_equals_eval() -> None:
    image = gradient_image()
    torch.manual_seed(0)
    plain = train_transform(16, [0.1, 0.1, 0.9, 0.9], augment=False)(image)
    assert torch.equal(plain, eval_transform(16, [0.1, 0.1, 0.9, 0.9])(image))


def test_jittered_box_stays_inside_the_crop_and_keeps_most_of_it() -> None:
    jitter = CropResize(16, [0.2, 0.1, 0.8, 0.9], jitter=True)
    torch.manual_seed(0)
    for _ in range(200):
        left, top, right, bottom = jitter.box((60, 160))
        assert 0 <= left < right <= 60 and 0 <= top < bottom <= 160
        # Area share >= 0.8, less what clipping a stretched side to the crop takes off.
        assert (right - left) * (bottom - top) >= 0.8 * 60 * 160 / 1.1 ** 0.5


def test_unjittered_box_is_the_whole_crop() -> None:
    assert CropResize(16, None).box((60, 160)) == (0.0, 0.0, 60.0, 160.0)


# --- augment_batch: the same augmentation for preloaded batches ---------------------------

def halves(batch: int, left: int = 40, right: int = 200, size: int = 16) -> torch.Tensor:
    """``batch`` grey images, dark on the left half and bright on the right."""
    images = torch.full((batch, 3, size, size), left, dtype=torch.uint8)
    images[..., size // 2:] = right
    return images


def test_augment_batch_is_reproducible_with_a_generator_and_random_without() -> None:
    images = halves(4)
    first = augment_batch(images, torch.Generator().manual_seed(1))
    assert first.shape == images.shape and first.dtype == torch.uint8
    assert torch.equal(first, augment_batch(images, torch.Generator().manual_seed(1)))
    assert not torch.equal(first, augment_batch(images, torch.Generator().manual_seed(2)))


def test_augment_batch_flips_about_half_the_images_horizontally() -> None:
    out = augment_batch(halves(400), torch.Generator().manual_seed(0)).float()
    flipped = out[..., :2].mean(dim=(1, 2, 3)) > out[..., -2:].mean(dim=(1, 2, 3))
    assert 0.4 < flipped.float().mean() < 0.6


def test_augment_batch_jitter_keeps_most_of_the_crop() -> None:
    """The edge columns stay on their own side: the box keeps at least 80% of the area."""
    out = augment_batch(halves(200), torch.Generator().manual_seed(0)).float()
    left, right = out[..., :3].mean(dim=(1, 2, 3)), out[..., -3:].mean(dim=(1, 2, 3))
    assert ((left - right).abs() > 40).all()


def test_augment_batch_colour_factors_stay_in_range_and_some_images_turn_grey() -> None:
    grey = torch.full((1000, 3, 4, 4), 100, dtype=torch.uint8)
    out = augment_batch(grey, torch.Generator().manual_seed(0)).float()
    # Contrast and saturation leave a flat grey image alone; brightness scales it by 0.8-1.2.
    assert out.min() >= 79 and out.max() <= 121 and out.std(dim=0).mean() > 5
    colourful = torch.zeros((2000, 3, 4, 4), dtype=torch.uint8)
    colourful[:, 0] = 200
    red = augment_batch(colourful, torch.Generator().manual_seed(0))
    grey_share = (red[:, 0] == red[:, 1]).all(dim=(1, 2)).float().mean()
    assert 0.02 < grey_share < 0.09  # GRAYSCALE_P = 0.05


# --- random erasing (data.random_erasing) -------------------------------------------------

def erased_share(images: torch.Tensor) -> torch.Tensor:
    """Per image, the share of pixels that show the erasing fill (the inputs never do)."""
    fill = torch.tensor(ERASING_FILL, dtype=torch.uint8).view(1, 3, 1, 1)
    return (images == fill).all(dim=1).float().mean(dim=(1, 2))


def test_erase_batch_fills_one_rectangle_per_chosen_image_with_the_mean_colour() -> None:
    images = torch.zeros((2000, 3, 32, 32), dtype=torch.uint8)
    share = erased_share(erase_batch(images, 0.5, torch.Generator().manual_seed(0)))
    erased = share > 0
    assert 0.45 < erased.float().mean() < 0.55
    # ERASING_SCALE = (0.02, 0.33): areas drawn uniformly, cut to the image where too long.
    assert share[erased].min() >= 0.01 and share[erased].max() <= 0.36
    assert 0.12 < share[erased].mean() < 0.2
    out = erase_batch(images[:50], 1.0, torch.Generator().manual_seed(1))
    for image in out:
        rows, columns = (image[0] != 0).nonzero(as_tuple=True)
        height, width = int(rows.max() - rows.min()) + 1, int(columns.max() - columns.min()) + 1
        assert len(rows) == height * width  # one solid rectangle


def test_augment_batch_erases_only_when_asked_and_keeps_its_other_draws() -> None:
    images = torch.zeros((500, 3, 16, 16), dtype=torch.uint8)
    plain = augment_batch(images, torch.Generator().manual_seed(3))
    assert (erased_share(plain) == 0).all()
    erased = augment_batch(images, torch.Generator().manual_seed(3), random_erasing=0.25)
    touched = erased_share(erased) > 0
    assert 0.18 < touched.float().mean() < 0.32
    assert torch.equal(erased[~touched], plain[~touched])


def test_train_transform_erases_like_the_batch_path() -> None:
    torch.manual_seed(0)
    transform = train_transform(32, None, random_erasing=1.0)
    shares = torch.stack([erased_share(transform(Image.new("RGB", (40, 40)))[None])[0] for _ in range(40)])
    assert (shares > 0).all() and shares.max() <= 0.36
