"""The 40 CelebA attribute names in canonical order: the single source of truth."""

from __future__ import annotations

#: The 40 CelebA attributes, in the order of ``list_attr_celeba.txt``. Every
#: attribute vector in faceattr (labels, masks, logits, thresholds) uses this order.
ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald",
    "Bangs", "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair",
    "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)

NUM_ATTRIBUTES: int = len(ATTRIBUTES)

#: Position of each attribute in :data:`ATTRIBUTES`.
ATTRIBUTE_INDEX: dict[str, int] = {name: i for i, name in enumerate(ATTRIBUTES)}

#: The SCUT-FBP5500 beauty scale: the mean of 60 raters' scores from 1 to 5.
BEAUTY_RANGE: tuple[float, float] = (1.0, 5.0)
