"""Helpers of the labelling app's tests: a store with a project of images in distinct colours, and its tokens."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw

from faceattr.label.store import LabelStore

#: One colour per image, far apart, so a screenshot shows which image is where.
COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (67, 99, 216), (245, 130, 49), (145, 30, 180),
           (66, 212, 244), (240, 50, 230), (191, 239, 69), (250, 190, 212), (70, 153, 144), (154, 99, 36)]


def swatch_jpeg(index: int, size: tuple[int, int] = (178, 218)) -> bytes:
    """A JPEG of ``COLOURS[index]`` (cycled) with the index written on it."""
    image = Image.new("RGB", size, COLOURS[index % len(COLOURS)])
    ImageDraw.Draw(image).text((size[0] // 2 - 6, size[1] // 2 - 6), str(index), fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


@dataclass
class LabelProject:
    """A project in a store: its name, image ids (in the order added), the admin token and rater tokens."""

    store: LabelStore
    name: str
    image_ids: list[int]
    admin: str
    raters: list[str]


def make_project(store: LabelStore, name: str = "colours", images: int = 6, raters: int = 1,
                 admin: str | None = None, **schedule: object) -> LabelProject:
    """A project of ``images`` colour swatches (``image-00`` ...) and ``raters`` raters (``rater-0`` ...).

    ``schedule`` holds :class:`~faceattr.label.schedule.ScheduleSettings` fields.
    """
    from faceattr.label.schedule import ScheduleSettings

    admin = admin or store.create_admin_token()
    store.create_project(name, "Which colour do you prefer?", ScheduleSettings(**schedule))
    ids = [store.add_image(name, f"image-{index:02d}", swatch_jpeg(index), swatch_jpeg(index, (48, 59)))
           for index in range(images)]
    tokens = [store.add_rater(name, f"rater-{index}") for index in range(raters)]
    return LabelProject(store, name, ids, admin, tokens)


def bearer(token: str) -> dict[str, str]:
    """The header a token travels in."""
    return {"Authorization": f"Bearer {token}"}
