"""Image transforms: a source's face crop, resizing, training augmentation and normalisation.

Every transform takes an RGB PIL image and returns a uint8 ``(3, S, S)`` tensor; the
network normalises it (with :data:`MEAN` and :data:`STD`) on its own device. Both first cut the source's crop box (each dataset frames the face differently,
so the crop puts faces of all sources at the same place and scale), then resize to
``S x S``. Resizing happens before any colour work, so the costly per-pixel augmentations
run on the small image. Randomness comes from torch's global generator only, so
``torch.manual_seed`` makes a training transform reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torchvision.transforms import v2

from faceattr.image import crop_box

#: ImageNet channel means and standard deviations (RGB, on the 0-1 scale); the one place
#: the input normalisation is defined (pretrained timm backbones expect it). The network
#: applies it: see :class:`faceattr.models.FaceAttrNet`.
MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Training jitter of the crop: share of the crop box area kept, and the range of its
#: aspect ratio relative to the crop box's own.
JITTER_SCALE: tuple[float, float] = (0.8, 1.0)
JITTER_RATIO: tuple[float, float] = (0.9, 1.1)
#: Colour jitter strength of both training paths: brightness, contrast and saturation
#: factors are drawn from ``[1 - COLOUR_JITTER, 1 + COLOUR_JITTER]``.
COLOUR_JITTER: float = 0.2
GRAYSCALE_P: float = 0.05
#: Random erasing (``data.random_erasing``), as torchvision's defaults: the rectangle's share of
#: the image area and its aspect ratio; it is filled with :data:`ERASING_FILL`, the mean colour,
#: which the network's normalisation turns into zeros (timm's ``const`` mode).
ERASING_SCALE: tuple[float, float] = (0.02, 0.33)
ERASING_RATIO: tuple[float, float] = (0.3, 3.3)
ERASING_FILL: tuple[int, int, int] = tuple(round(255 * channel) for channel in MEAN)

#: PIL first shrinks by an integer factor while the image stays this many times larger than
#: the output, then resamples: much faster on large images and visually the same.
REDUCING_GAP: float = 3.0

Transform = Callable[[Image.Image], torch.Tensor]


class CropResize:
    """Cuts a source's fractional crop box from a PIL image and resizes it to a square.

    The resize is one antialiased PIL resample (large images are first shrunk by an
    integer factor, which is fast). With ``jitter`` it resamples a random part of the cut
    crop: scaled (area share :data:`JITTER_SCALE`), stretched (aspect :data:`JITTER_RATIO`
    relative to the crop's own) and shifted, at subpixel precision, so on average the
    training input frames the face as the evaluation input does. A class rather than a
    closure so that DataLoader workers can pickle it.

    Args:
        image_size: Side of the square output in pixels.
        crop: Fractions as in :func:`crop_box`; ``None`` keeps the whole image.
        jitter: Randomise the box (training) or not (evaluation).

    >>> CropResize(16, [0.25, 0.25, 0.75, 0.75])(Image.new("RGB", (40, 20))).size
    (16, 16)
    """

    def __init__(self, image_size: int, crop: Sequence[float] | None, jitter: bool = False):
        crop_box((1, 1), crop)  # fail when the transform is built, not on the first image
        self.image_size = image_size
        self.crop = None if crop is None else [float(value) for value in crop]
        self.jitter = jitter

    def box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The box to resample from the cut crop of ``size`` pixels: all of it, or a random part."""
        width, height = size
        if not self.jitter:
            return 0.0, 0.0, float(width), float(height)
        area_u, ratio_u, x_u, y_u = torch.rand(4).tolist()
        area = JITTER_SCALE[0] + (JITTER_SCALE[1] - JITTER_SCALE[0]) * area_u
        log_low, log_high = math.log(JITTER_RATIO[0]), math.log(JITTER_RATIO[1])
        ratio = math.exp(log_low + (log_high - log_low) * ratio_u)
        new_width = min(width, width * math.sqrt(area * ratio))
        new_height = min(height, height * math.sqrt(area / ratio))
        x, y = (width - new_width) * x_u, (height - new_height) * y_u
        return x, y, x + new_width, y + new_height

    def __call__(self, image: Image.Image) -> Image.Image:
        # Cut first: a box resample alone would blend in pixels from outside the crop.
        cut = image if self.crop is None else image.crop(crop_box(image.size, self.crop))
        return cut.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR,
                          box=self.box(cut.size), reducing_gap=REDUCING_GAP)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_size={self.image_size}, crop={self.crop}, jitter={self.jitter})"


def eval_transform(image_size: int, crop: Sequence[float] | None) -> Transform:
    """The deterministic transform for validation, testing and prediction.

    Args:
        image_size: Side of the square output in pixels.
        crop: The source's fractional crop box (``None``: whole image).

    Returns:
        A callable from an RGB PIL image to a uint8 ``(3, image_size, image_size)`` tensor.

    >>> eval_transform(32, [0.1, 0.1, 0.9, 0.9])(Image.new("RGB", (50, 60))).shape
    torch.Size([3, 32, 32])
    """
    return v2.Compose([CropResize(image_size, crop), v2.PILToTensor(), v2.ToPureTensor()])


def train_transform(image_size: int, crop: Sequence[float] | None, augment: bool = True,
                    random_erasing: float = 0.0) -> Transform:
    """The training transform: the source's crop with a small random jitter, flips and colour.

    The augmentations are a random scale/shift of the crop box (see :class:`CropResize`),
    a horizontal flip (no CelebA attribute is left/right specific), brightness, contrast and
    saturation jitter and an occasional grayscale image. No hue jitter: it cost more than
    half of the per-image CPU time (0.65 of 1.2 ms at 64 px) for a change too small to see.

    Args:
        image_size: Side of the square output in pixels.
        crop: The source's fractional crop box (``None``: whole image).
        augment: ``False`` gives :func:`eval_transform` (for runs without augmentation).
        random_erasing: Chance of erasing a random rectangle (:data:`ERASING_SCALE`,
            :data:`ERASING_RATIO`, filled with :data:`ERASING_FILL`).

    Returns:
        A callable from an RGB PIL image to a uint8 ``(3, image_size, image_size)`` tensor.

    >>> _ = torch.manual_seed(0)
    >>> train_transform(32, None)(Image.new("RGB", (50, 60))).dtype
    torch.uint8
    """
    if not augment:
        return eval_transform(image_size, crop)
    return v2.Compose([
        CropResize(image_size, crop, jitter=True),
        # On the small PIL image: PIL's colour operations are faster than torch's here.
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(brightness=COLOUR_JITTER, contrast=COLOUR_JITTER, saturation=COLOUR_JITTER),
        v2.RandomGrayscale(p=GRAYSCALE_P),
        v2.PILToTensor(),
        *([v2.RandomErasing(random_erasing, ERASING_SCALE, ERASING_RATIO, value=list(ERASING_FILL))]
          if random_erasing else []),
        v2.ToPureTensor(),
    ])



def _gray(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of float ``(B, 3, H, W)`` images as ``(B, 1, H, W)``, as torchvision computes it."""
    return (0.299 * images[:, 0:1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3])


def augment_batch(images: torch.Tensor, generator: torch.Generator | None = None,
                  random_erasing: float = 0.0) -> torch.Tensor:
    """The training augmentation of :func:`train_transform`, for a batch on any device.

    For preloaded images (``data.preload``): each image of the batch, already the evaluation
    crop at its final size, gets its own random crop jitter (area :data:`JITTER_SCALE`,
    aspect :data:`JITTER_RATIO`, shift; one bilinear resample), horizontal flip, brightness,
    contrast and saturation jitter (in that order; torchvision shuffles the order) and, with
    probability :data:`GRAYSCALE_P`, grayscale, then with probability ``random_erasing`` a
    random rectangle filled with the mean colour (see :func:`erase_batch`). One pass of a few
    tensor operations, so a GPU augments a batch in well under a millisecond.

    Args:
        images: uint8 ``(B, 3, S, S)``.
        generator: Random source on the images' device (``None``: torch's global one).
        random_erasing: Chance of erasing a rectangle of each image.

    Returns:
        uint8 ``(B, 3, S, S)`` on the same device.

    >>> out = augment_batch(torch.full((2, 3, 8, 8), 100, dtype=torch.uint8), torch.Generator().manual_seed(0))
    >>> out.shape, out.dtype
    (torch.Size([2, 3, 8, 8]), torch.uint8)
    """
    batch, _, height, width = images.shape
    draws = torch.rand(batch, 9, generator=generator, device=images.device)
    area = JITTER_SCALE[0] + (JITTER_SCALE[1] - JITTER_SCALE[0]) * draws[:, 0]
    log_low, log_high = math.log(JITTER_RATIO[0]), math.log(JITTER_RATIO[1])
    ratio = torch.exp(log_low + (log_high - log_low) * draws[:, 1])
    box_width = torch.sqrt(area * ratio).clamp(max=1.0)  # fractions of the side
    box_height = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (1 - box_width) * draws[:, 2] + box_width / 2
    centre_y = (1 - box_height) * draws[:, 3] + box_height / 2
    flip = torch.where(draws[:, 4] < 0.5, -1.0, 1.0)
    # affine_grid maps output coordinates in [-1, 1] to input ones: scale to the box, move to its centre.
    theta = torch.zeros(batch, 2, 3, device=images.device)
    theta[:, 0, 0] = box_width * flip
    theta[:, 0, 2] = 2 * centre_x - 1
    theta[:, 1, 1] = box_height
    theta[:, 1, 2] = 2 * centre_y - 1
    grid = torch.nn.functional.affine_grid(theta, [batch, 3, height, width], align_corners=False)
    out = torch.nn.functional.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border",
                                          align_corners=False)

    def factor(column: int) -> torch.Tensor:
        return (1 - COLOUR_JITTER + 2 * COLOUR_JITTER * draws[:, column]).view(batch, 1, 1, 1)

    out = (out * factor(5)).clamp(0, 255)
    mean = _gray(out).mean(dim=(2, 3), keepdim=True)
    out = (mean + (out - mean) * factor(6)).clamp(0, 255)
    gray = _gray(out)
    out = (gray + (out - gray) * factor(7)).clamp(0, 255)
    out = torch.where((draws[:, 8] < GRAYSCALE_P).view(batch, 1, 1, 1), _gray(out).expand_as(out), out)
    out = out.round().to(torch.uint8)
    # Drawn after the others, so that runs without erasing keep their augmentation draws.
    return erase_batch(out, random_erasing, generator) if random_erasing else out


def erase_batch(images: torch.Tensor, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020) of a whole batch in one pass, as torchvision's ``RandomErasing`` does per image.

    Each image, with chance ``probability``, gets a rectangle of :data:`ERASING_SCALE` of its area
    and aspect ratio within :data:`ERASING_RATIO` (log-uniform), placed uniformly, filled with
    :data:`ERASING_FILL`. A rectangle that would not fit is cut to the image (torchvision redraws it).

    Args:
        images: uint8 ``(B, 3, H, W)``.
        probability: Chance that an image is erased.
        generator: Random source on the images' device.

    Returns:
        A new uint8 ``(B, 3, H, W)`` tensor.

    >>> out = erase_batch(torch.full((4, 3, 8, 8), 7, dtype=torch.uint8), 1.0, torch.Generator().manual_seed(0))
    >>> bool(((out == 7).all(dim=1).sum(dim=(1, 2)) < 64).all())
    True
    """
    batch, _, height, width = images.shape
    draws = torch.rand(batch, 5, generator=generator, device=images.device)
    area = ERASING_SCALE[0] + (ERASING_SCALE[1] - ERASING_SCALE[0]) * draws[:, 0]
    log_low, log_high = math.log(ERASING_RATIO[0]), math.log(ERASING_RATIO[1])
    ratio = torch.exp(log_low + (log_high - log_low) * draws[:, 1])
    box_height = (torch.sqrt(area * ratio) * height).round().clamp(1, height)
    box_width = (torch.sqrt(area / ratio) * width).round().clamp(1, width)
    top = ((height - box_height + 1) * draws[:, 2]).floor()
    left = ((width - box_width + 1) * draws[:, 3]).floor()
    rows = torch.arange(height, device=images.device).view(1, height, 1)
    columns = torch.arange(width, device=images.device).view(1, 1, width)
    inside = ((rows >= top.view(-1, 1, 1)) & (rows < (top + box_height).view(-1, 1, 1))
              & (columns >= left.view(-1, 1, 1)) & (columns < (left + box_width).view(-1, 1, 1)))
    erased = inside & (draws[:, 4] < probability).view(-1, 1, 1)
    fill = torch.tensor(ERASING_FILL, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return torch.where(erased.unsqueeze(1), fill, images)
