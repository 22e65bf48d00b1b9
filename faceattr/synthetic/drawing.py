"""Draws faces whose visible features follow attribute labels, and random labels at CelebA's rates.

The faces are cartoons, but in a dataset's aligned geometry (CelebA's 178x218: eyes near
(69, 111) and (108, 111), mouth near y=152) and with the labelled features drawn: hair
colour and length, baldness, bangs, hats, glasses, smiles, open mouths, beards, pale skin,
lipstick and more. Pose, skin tone, background and noise vary, so a small CNN has to learn
the features. A beauty score shows as eye size and skin blemishes. Everything is
deterministic given the random generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from faceattr.attributes import ATTRIBUTES

#: (female, male) share of images with each attribute in CelebA's ``list_attr_celeba.txt``.
BASE_RATES: dict[str, tuple[float, float]] = {
    "5_o_Clock_Shadow": (0.0, 0.27), "Arched_Eyebrows": (0.42, 0.05), "Attractive": (0.68, 0.28),
    "Bags_Under_Eyes": (0.10, 0.35), "Bald": (0.0, 0.05), "Bangs": (0.20, 0.08), "Big_Lips": (0.30, 0.16),
    "Big_Nose": (0.10, 0.42), "Black_Hair": (0.20, 0.30), "Blond_Hair": (0.24, 0.02), "Blurry": (0.05, 0.06),
    "Brown_Hair": (0.24, 0.15), "Bushy_Eyebrows": (0.07, 0.24), "Chubby": (0.01, 0.12),
    "Double_Chin": (0.01, 0.10), "Eyeglasses": (0.02, 0.12), "Goatee": (0.0, 0.15), "Gray_Hair": (0.01, 0.09),
    "Heavy_Makeup": (0.66, 0.0), "High_Cheekbones": (0.56, 0.31), "Male": (0.0, 1.0),
    "Mouth_Slightly_Open": (0.53, 0.43), "Mustache": (0.0, 0.10), "Narrow_Eyes": (0.11, 0.12),
    "No_Beard": (1.0, 0.61), "Oval_Face": (0.33, 0.22), "Pale_Skin": (0.06, 0.02), "Pointy_Nose": (0.36, 0.16),
    "Receding_Hairline": (0.05, 0.12), "Rosy_Cheeks": (0.11, 0.0), "Sideburns": (0.0, 0.14),
    "Smiling": (0.54, 0.40), "Straight_Hair": (0.18, 0.24), "Wavy_Hair": (0.45, 0.14),
    "Wearing_Earrings": (0.31, 0.02), "Wearing_Hat": (0.03, 0.08), "Wearing_Lipstick": (0.81, 0.01),
    "Wearing_Necklace": (0.20, 0.02), "Wearing_Necktie": (0.0, 0.17), "Young": (0.87, 0.63),
}
MALE_SHARE = 0.42

#: Attributes that belong to the person, so all images of one identity share them.
PERSON_ATTRIBUTES = frozenset({
    "Male", "Bald", "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Big_Nose", "Pointy_Nose", "Big_Lips",
    "Bushy_Eyebrows", "Arched_Eyebrows", "Narrow_Eyes", "Chubby", "Double_Chin", "Young", "Oval_Face",
    "Receding_Hairline", "Straight_Hair", "Wavy_Hair", "Attractive", "Pale_Skin", "No_Beard", "Goatee",
    "Mustache", "Sideburns", "Bags_Under_Eyes", "High_Cheekbones",
})

HAIR_COLOURS = {"Black_Hair": (32, 26, 24), "Blond_Hair": (228, 198, 118), "Brown_Hair": (112, 70, 40),
                "Gray_Hair": (172, 172, 172)}
OTHER_HAIR = (150, 62, 34)  # auburn: none of CelebA's four hair-colour columns
DARK = (38, 22, 22)
GOLD = (232, 190, 60)


@dataclass(frozen=True)
class Geometry:
    """Where a dataset's crop puts the face: the canvas it is drawn on, the midpoint
    between the eyes and the eye distance, in canvas pixels."""

    canvas: tuple[int, int]
    eyes: tuple[float, float]
    eye_distance: float


CELEBA_GEOMETRY = Geometry((178, 218), (88.5, 111.0), 39.0)
#: Wider than CelebA's: ``crop [0.12, 0.14, 0.88, 0.9]`` brings it back to CelebA's square.
HQ_GEOMETRY = Geometry((256, 256), (128.0, 139.0), 43.0)
SCUT_GEOMETRY = Geometry((224, 224), (112.0, 98.0), 60.0)


@dataclass(frozen=True)
class _Style:
    """The random look of one image. It is drawn before the labels are looked at, so two
    faces drawn from the same generator state differ only where their labels differ."""

    shift: tuple[float, float]
    scale: float
    skin: tuple[int, int, int]
    background: np.ndarray
    noise: np.ndarray
    tint: int
    colours: np.ndarray  # hat, clothes, glasses, lipstick, eyeshadow, iris, necktie
    blemishes: np.ndarray


def _mix(colour, other, share: float) -> tuple[int, int, int]:
    return tuple(int(a + (b - a) * share) for a, b in zip(colour, other))


def _sample_style(rng: np.random.Generator, geometry: Geometry, tone: float | None) -> _Style:
    width, height = geometry.canvas
    drawn_tone = rng.random()  # drawn even when given, so the draws after it do not shift
    tone = drawn_tone if tone is None else tone
    skin = _mix((246, 214, 188), (112, 74, 52), tone ** 1.2)
    skin = tuple(int(np.clip(c + d, 0, 255)) for c, d in zip(skin, rng.integers(-10, 11, 3)))
    return _Style(
        shift=tuple(rng.uniform(-0.12, 0.12, 2)), scale=float(rng.uniform(0.94, 1.06)), skin=skin,
        background=rng.integers(30, 226, (3, 3, 3), dtype=np.uint8),
        noise=rng.integers(-9, 10, (height, width, 3), dtype=np.int16), tint=int(rng.integers(-14, 15)),
        colours=rng.integers(0, 256, (7, 3)), blemishes=rng.uniform((-0.8, 0.25), (0.8, 1.55), (10, 2)))


class _Pen:
    """Converts face units to pixels: (0, 0) is the midpoint between the eyes, 1 the eye distance."""

    def __init__(self, image: Image.Image, geometry: Geometry, style: _Style):
        self.draw = ImageDraw.Draw(image)
        self.unit = geometry.eye_distance * style.scale
        self.x = geometry.eyes[0] + style.shift[0] * geometry.eye_distance
        self.y = geometry.eyes[1] + style.shift[1] * geometry.eye_distance

    def box(self, left: float, top: float, right: float, bottom: float) -> list[float]:
        return [self.x + left * self.unit, self.y + top * self.unit, self.x + right * self.unit,
                self.y + bottom * self.unit]

    def points(self, *points: tuple[float, float]) -> list[tuple[float, float]]:
        return [(self.x + px * self.unit, self.y + py * self.unit) for px, py in points]

    def width(self, units: float) -> int:
        return max(1, round(units * self.unit))


def _hair_colour(labels: dict[str, bool], tint: int) -> tuple[int, int, int]:
    base = next((colour for name, colour in HAIR_COLOURS.items() if labels.get(name)), OTHER_HAIR)
    return tuple(int(np.clip(c + tint, 0, 255)) for c in base)


def _render(labels: dict[str, bool], geometry: Geometry, style: _Style, beauty: float | None) -> Image.Image:
    """Draws the face on the canvas: back to front, each labelled feature where it shows."""
    on = labels.get
    image = Image.fromarray(style.background).resize(geometry.canvas, Image.BILINEAR)
    pen = _Pen(image, geometry, style)
    draw = pen.draw
    hat, clothes, glasses, lipstick, eyeshadow, iris, necktie = (tuple(int(c) for c in row) for row in style.colours)
    skin = _mix(style.skin, (252, 242, 236), 0.7) if on("Pale_Skin") else style.skin
    shade = _mix(skin, (60, 35, 25), 0.25)
    hair = _hair_colour(labels, style.tint)
    beard = _mix(hair, (0, 0, 0), 0.15) if not on("Bald") else (60, 44, 34)
    half_width = 1.0 + 0.12 * bool(on("Male")) + 0.1 * bool(on("Chubby"))
    long_hair = not on("Bald") and not on("Male")

    draw.ellipse(pen.box(-2.3, 2.3, 2.3, 5.5), fill=clothes)
    draw.rectangle(pen.box(-0.42, 1.2, 0.42, 2.6), fill=shade)
    if on("Wearing_Necktie"):
        draw.polygon(pen.points((0, 2.3), (-0.14, 2.42), (0, 3.4), (0.14, 2.42)), fill=necktie)
    if on("Wearing_Necklace"):
        draw.arc(pen.box(-0.55, 1.5, 0.55, 2.45), 20, 160, fill=GOLD, width=pen.width(0.06))
    if long_hair:
        draw.ellipse(pen.box(-1.5, -1.5, 1.5, 1.3), fill=hair)
        draw.rectangle(pen.box(-1.5, 0.2, 1.5, 2.45), fill=hair)
    for side in (-1, 1):
        ear = side * half_width * 1.02
        draw.ellipse(pen.box(ear - 0.16, -0.1, ear + 0.16, 0.6), fill=skin)
    head = pen.box(-half_width, -1.1, half_width, 1.8)
    draw.ellipse(head, fill=skin)
    if on("Double_Chin"):
        draw.arc(pen.box(-0.5, 1.4, 0.5, 1.95), 25, 155, fill=shade, width=pen.width(0.05))
    if on("5_o_Clock_Shadow"):
        draw.chord(head, 25, 155, fill=_mix(skin, (70, 60, 55), 0.35))
    if on("Male") and not (on("No_Beard") or on("Goatee") or on("Mustache")):
        draw.chord(head, 15, 165, fill=beard)
    if on("Sideburns"):
        for side in (-1, 1):
            inner, outer = sorted((side * half_width * 0.86, side * half_width))
            draw.rectangle(pen.box(inner, -0.45, outer, 0.55), fill=beard)
    if not on("Young"):
        for y in (-0.58, -0.7):
            draw.line(pen.points((-0.4, y), (0.4, y)), fill=shade, width=pen.width(0.025))
    if on("Rosy_Cheeks"):
        for x in (-0.62, 0.62):
            draw.ellipse(pen.box(x - 0.17, 0.45, x + 0.17, 0.75), fill=_mix(skin, (235, 90, 110), 0.45))
    if beauty is not None:
        for x, y in style.blemishes[:round((5.0 - beauty) * 2.5)]:
            draw.ellipse(pen.box(x - 0.045, y - 0.045, x + 0.045, y + 0.045), fill=_mix(skin, (90, 40, 30), 0.6))

    eye_size = 1.0 if beauty is None else 0.7 + 0.17 * (beauty - 1.0)
    eye_w, eye_h = 0.18 * eye_size, 0.09 * eye_size * (0.45 if on("Narrow_Eyes") else 1.0)
    brow = _mix(hair if not on("Bald") else beard, (0, 0, 0), 0.3)
    for side in (-1, 1):
        x = 0.5 * side
        if on("Heavy_Makeup"):
            draw.ellipse(pen.box(x - eye_w * 1.3, -0.24, x + eye_w * 1.3, 0.03), fill=eyeshadow)
        if on("Bags_Under_Eyes"):
            draw.arc(pen.box(x - eye_w, -0.02, x + eye_w, 0.24), 20, 160, fill=shade, width=pen.width(0.035))
        draw.ellipse(pen.box(x - eye_w, -eye_h, x + eye_w, eye_h), fill=(244, 244, 240))
        draw.ellipse(pen.box(x - 0.07 * eye_size, -eye_h, x + 0.07 * eye_size, eye_h), fill=_mix(iris, DARK, 0.6))
        arch = -0.42 if on("Arched_Eyebrows") else -0.31
        draw.line(pen.points((side * 0.27, -0.27), (side * 0.5, arch), (side * 0.75, -0.27)), fill=brow,
                  width=pen.width(0.11 if on("Bushy_Eyebrows") else 0.045))

    nose = 1.5 if on("Big_Nose") else 1.0
    tip = 0.7 if on("Pointy_Nose") else 0.6
    draw.polygon(pen.points((0, 0.15), (-0.11 * nose, tip), (0.11 * nose, tip)), fill=shade)
    lips = _mix(lipstick, (210, 20, 40), 0.6) if on("Wearing_Lipstick") else _mix(skin, (150, 60, 60), 0.5)
    lip_width = pen.width(0.09 if on("Big_Lips") else 0.05)
    if on("Smiling"):
        if on("Mouth_Slightly_Open"):
            draw.chord(pen.box(-0.36, 0.75, 0.36, 1.22), 0, 180, fill=DARK)
        draw.arc(pen.box(-0.38, 0.72, 0.38, 1.22), 5, 175, fill=lips, width=lip_width)
    elif on("Mouth_Slightly_Open"):
        draw.ellipse(pen.box(-0.25, 0.95, 0.25, 1.17), fill=DARK, outline=lips, width=lip_width)
    else:
        draw.line(pen.points((-0.33, 1.05), (0.33, 1.05)), fill=lips, width=lip_width)
    if on("Mustache"):
        draw.polygon(pen.points((-0.4, 0.95), (0, 0.8), (0.4, 0.95), (0.3, 0.99), (0, 0.89), (-0.3, 0.99)), fill=beard)
    if on("Goatee"):
        draw.ellipse(pen.box(-0.2, 1.32, 0.2, 1.78), fill=beard)

    if not on("Bald"):
        hairline = -0.95 if on("Receding_Hairline") else -0.7
        draw.chord(pen.box(-half_width * 1.07, -1.42, half_width * 1.07, 2 * hairline + 1.42), 180, 360, fill=hair)
    if on("Bangs"):
        fringe = [(x / 10, -0.42 if i % 2 else -0.5) for i, x in enumerate(range(-8, 9, 2))]
        draw.polygon(pen.points((-0.85, -0.95), (0.85, -0.95), *reversed(fringe)), fill=hair)
    if on("Wearing_Hat"):
        crown = 1.12 * half_width  # wide enough to hide a man's short hair
        draw.rounded_rectangle(pen.box(-crown, -1.9, crown, -0.7), radius=pen.width(0.3), fill=hat)
        draw.rectangle(pen.box(-1.6, -0.86, 1.6, -0.62), fill=_mix(hat, (0, 0, 0), 0.3))
    if on("Eyeglasses"):
        frame = _mix(glasses, DARK, 0.75)
        for side in (-1, 1):
            draw.ellipse(pen.box(0.5 * side - 0.27, -0.2, 0.5 * side + 0.27, 0.2), outline=frame,
                         width=pen.width(0.055))
            draw.line(pen.points((side * 0.77, -0.04), (side * half_width, -0.1)), fill=frame, width=pen.width(0.05))
        draw.line(pen.points((-0.23, -0.03), (0.23, -0.03)), fill=frame, width=pen.width(0.05))
    if on("Wearing_Earrings"):
        for side in (-1, 1):
            x = side * half_width * 1.02
            draw.ellipse(pen.box(x - 0.07, 0.6, x + 0.07, 0.74), fill=GOLD)

    if on("Blurry"):
        image = image.filter(ImageFilter.GaussianBlur(pen.unit * 0.06))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + style.noise, 0, 255).astype(np.uint8))


def _consistent(labels: dict[str, bool]) -> dict[str, bool]:
    """Removes combinations a face cannot show (a woman's goatee, a bald man's bangs, ...)."""
    if not labels["Male"]:
        labels.update({"5_o_Clock_Shadow": False, "Goatee": False, "Mustache": False, "Sideburns": False,
                       "No_Beard": True, "Bald": False})
    if labels["Goatee"] or labels["Mustache"]:
        labels["No_Beard"] = False
    if labels["Wearing_Hat"]:
        labels.update({"Bangs": False, "Bald": False, "Receding_Hairline": False})
        if labels["Male"]:  # the hat hides short hair
            labels.update(dict.fromkeys(HAIR_COLOURS, False))
    if labels["Bald"]:
        labels.update({"Bangs": False, "Receding_Hairline": False, "Straight_Hair": False, "Wavy_Hair": False,
                       **dict.fromkeys(HAIR_COLOURS, False)})
    if labels["Gray_Hair"]:
        labels["Young"] = False
    return labels


def random_labels(rng: np.random.Generator, male: bool | None = None) -> dict[str, bool]:
    """Labels of one random face, with CelebA's base rates for a woman or a man.

    Args:
        rng: The random generator.
        male: Force the sex, or ``None`` to draw it (42% men, as in CelebA).

    Returns:
        Every attribute name to a bool; at most one hair colour is set.

    >>> labels = random_labels(np.random.default_rng(0), male=False)
    >>> labels["Male"], labels["Goatee"], sum(labels[c] for c in HAIR_COLOURS) <= 1
    (False, False, True)
    """
    draws = rng.random(len(ATTRIBUTES) + 2)
    male = bool(draws[-1] < MALE_SHARE) if male is None else male
    labels = {name: bool(draw < BASE_RATES[name][male]) for name, draw in zip(ATTRIBUTES, draws)}
    labels["Male"] = male
    shares = np.cumsum([BASE_RATES[name][male] for name in HAIR_COLOURS])
    colour = int(np.searchsorted(shares, draws[-2], side="right"))
    labels.update({name: i == colour for i, name in enumerate(HAIR_COLOURS)})
    return _consistent(labels)


def person_image_labels(rng: np.random.Generator, person: dict[str, bool]) -> dict[str, bool]:
    """Labels of one image of ``person``: their own attributes, freshly drawn transient ones.

    Args:
        rng: The random generator.
        person: The person's labels (from :func:`random_labels`); their
            :data:`PERSON_ATTRIBUTES` are kept, the rest (smiles, glasses, hats ...) drawn anew.

    Returns:
        Every attribute name to a bool.

    >>> rng = np.random.default_rng(0)
    >>> person = random_labels(rng, male=True)
    >>> person_image_labels(rng, person)["Big_Nose"] == person["Big_Nose"]
    True
    """
    labels = random_labels(rng, person["Male"])
    labels.update({name: person[name] for name in PERSON_ATTRIBUTES})
    return _consistent(labels)


def random_beauty(rng: np.random.Generator) -> float:
    """A beauty score spread like SCUT-FBP5500's mean ratings: about 3 +- 0.7, within 1-5.

    >>> 1.0 <= random_beauty(np.random.default_rng(0)) <= 5.0
    True
    """
    return round(float(np.clip(rng.normal(3.0, 0.7), 1.0, 5.0)), 6)


def draw_face(labels: dict[str, bool], size: tuple[int, int] | None = None, rng: np.random.Generator | None = None,
              geometry: Geometry = CELEBA_GEOMETRY, tone: float | None = None,
              beauty: float | None = None) -> Image.Image:
    """Draws a face in a dataset's aligned geometry whose visible features follow ``labels``.

    The random draws (pose, skin, background, noise) do not depend on the labels, so two
    calls from the same generator state differ only where their labels differ.

    Args:
        labels: Attribute name to bool; absent names are False.
        size: Output ``(width, height)``; the face is drawn on ``geometry``'s canvas and
            resized (``None``: the canvas size, 178x218 for CelebA).
        rng: The random generator (``None``: a fixed seed).
        geometry: Where the crop puts the face: :data:`CELEBA_GEOMETRY`,
            :data:`HQ_GEOMETRY` or :data:`SCUT_GEOMETRY`.
        tone: Skin tone from 0 (light) to 1 (dark), e.g. to keep a person's across images;
            ``None`` draws one.
        beauty: A 1-5 score shown as eye size and skin blemishes (``None``: neither).

    Returns:
        An RGB image.

    Raises:
        ValueError: If ``labels`` names an unknown attribute.

    >>> draw_face({"Smiling": True, "Eyeglasses": True}, rng=np.random.default_rng(1)).size
    (178, 218)
    """
    unknown = set(labels) - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"unknown attribute names {sorted(unknown)}; see faceattr.ATTRIBUTES")
    rng = np.random.default_rng(0) if rng is None else rng
    image = _render(labels, geometry, _sample_style(rng, geometry, tone), beauty)
    size = geometry.canvas if size is None else tuple(size)
    return image if image.size == size else image.resize(size, Image.BILINEAR)
