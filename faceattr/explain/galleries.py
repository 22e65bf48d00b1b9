"""Error galleries: contact sheets of the validation images a model got most wrong, each with its Grad-CAM map.

:func:`~faceattr.evaluation.errors.gallery_selection` picks the images (the evaluation's
``galleries`` section: per attribute the most confident false positives and false negatives; for
beauty the highest and lowest predicted scores and the largest errors). :func:`draw_galleries`
draws them: one PNG per attribute (a row of false positives, a row of false negatives) and one for
beauty (three rows), each tile the face crop exactly as the model saw it (the evaluated dataset's
own item), the Grad-CAM map of that attribute or of the beauty head over it
(:func:`~faceattr.explain.maps.overlay`), and its probability or scores printed under it. It is a
:data:`~faceattr.evaluation.evaluate.GalleryDrawer`: ``tools/eval.py`` hands it to the evaluation.

Grad-CAM keeps only what raises its target (the ReLU), so the map of a low beauty score is mostly
blank. The beauty gallery therefore maps what lowers the score for the lowest predictions, and for
each large error what pushed the score the wrong way: what raised it where it was over-predicted,
what lowered it where it was under-predicted. Attribute tiles always map the attribute's logit:
for a false negative, where the model found what little evidence it saw.

>>> from faceattr.evaluation.evaluate import evaluate_checkpoint
>>> evaluation, paths = evaluate_checkpoint("runs/r18/best.pt", gallery_size=8,
...                                         draw_galleries=draw_galleries)  # doctest: +SKIP
>>> paths["gallery_Smiling"].name  # doctest: +SKIP
'Smiling.png'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor, nn
from torch.utils.data import Dataset

from faceattr.evaluation.errors import ATTRIBUTE_GALLERY_ROWS, BEAUTY_GALLERY_ROWS
from faceattr.explain.gradcam import BEAUTY_TARGET, grad_cam
from faceattr.explain.maps import overlay
from faceattr.files import fit_name, write_exclusive
from faceattr.models.deployed import DeployedModel

#: The galleries' folder inside the report folder.
GALLERY_FOLDER = "galleries"
#: Smallest side of a tile: small crops (64 px) are enlarged so their maps and captions read.
MIN_TILE_SIDE = 128
#: Images per Grad-CAM batch (each keeps its whole autograd graph while its maps are taken).
BATCH_SIZE = 32
#: Colours of a saved sheet: a palette PNG is a third of the size of an RGB one and reads the same.
PALETTE_COLOURS = 256
#: The gallery's own target for the map of what lowers the beauty score.
LOWERING_BEAUTY = "-beauty"

_ROW_TITLES = {
    "false_positives": "False positives: labelled absent, called present (most confident first)",
    "false_negatives": "False negatives: labelled present, called absent (most confident first)",
    "highest": "Highest predicted scores (map: what raises the score)",
    "lowest": "Lowest predicted scores (map: what lowers the score)",
    "largest_errors": "Largest errors |predicted - true| (map: what pushed the score the wrong way)",
}
_GAP, _TITLE_HEIGHT, _ROW_TITLE_HEIGHT, _CAPTION_HEIGHT = 6, 26, 20, 18
_BACKGROUND, _INK = (255, 255, 255), (20, 20, 20)

#: One tile: the evaluated row, the Grad-CAM target, the caption.
Tile = tuple[int, str, str]


def gallery_tiles(galleries: Mapping[str, Any]) -> dict[str, list[tuple[str, list[Tile]]]]:
    """What each gallery shows: per target (attribute name or ``"beauty"``), its titled rows of tiles.

    Attributes without a single error get no gallery.

    Args:
        galleries: The evaluation's ``galleries`` section.

    Returns:
        Target -> ``[(row title, [(row, target, caption), ...]), ...]``.

    >>> section = {"size": 1, "attributes": None,
    ...            "beauty": {kind: [{"row": 3, "path": "a.jpg", "predicted": 4.2, "target": 3.5}]
    ...                       for kind in ("highest", "lowest", "largest_errors")}}
    >>> [tiles for _, tiles in gallery_tiles(section)["beauty"]]
    [[(3, 'beauty', '4.20 (true 3.50)')], [(3, '-beauty', '4.20 (true 3.50)')], [(3, 'beauty', '4.20 (true 3.50)')]]
    """
    sheets: dict[str, list[tuple[str, list[Tile]]]] = {}
    for name, kinds in (galleries.get("attributes") or {}).items():
        rows = [(_ROW_TITLES[kind], [(item["row"], name, f"p = {item['probability']:.3f}") for item in kinds[kind]])
                for kind in ATTRIBUTE_GALLERY_ROWS]
        if any(tiles for _, tiles in rows):
            sheets[name] = rows
    beauty = galleries.get("beauty")
    if beauty is not None:
        sheets[BEAUTY_TARGET] = [(_ROW_TITLES[kind], [(item["row"], _beauty_map(kind, item),
                                                       f"{item['predicted']:.2f} (true {item['target']:.2f})")
                                                      for item in beauty[kind]]) for kind in BEAUTY_GALLERY_ROWS]
    return sheets


def _beauty_map(kind: str, item: Mapping[str, Any]) -> str:
    """Which beauty map a tile shows: what lowers the score (lowest, under-predicted) or what raises it."""
    lowering = kind == "lowest" or (kind == "largest_errors" and item["predicted"] < item["target"])
    return LOWERING_BEAUTY if lowering else BEAUTY_TARGET


class _LoweringBeauty(nn.Module):
    """The network with its beauty score negated, so that Grad-CAM of ``"beauty"`` shows what lowers the score.

    It shares the network's backbone, where :func:`~faceattr.explain.gradcam.target_layer` finds the layer.
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.backbone = network.backbone

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        outputs = self.network(images)
        return {**outputs, "beauty": -outputs["beauty"]}


def draw_galleries(model: DeployedModel, images: Dataset, galleries: Mapping[str, Any], out_dir: Path,
                   device: torch.device) -> dict[str, Path]:
    """Draws every gallery of an evaluation into ``out_dir/galleries/TARGET.png``.

    Args:
        model: The evaluated model (its network gives the maps).
        images: The evaluated dataset: item ``row`` is the sample of the galleries' ``row``, its
            ``"image"`` the uint8 ``(3, S, S)`` crop the model saw.
        galleries: The evaluation's ``galleries`` section.
        out_dir: The report folder (must exist).
        device: Where the network runs.

    Returns:
        Target (attribute name or ``"beauty"``) -> the PNG written; files of the same names are replaced.
    """
    sheets = gallery_tiles(galleries)
    if not sheets:
        return {}
    wanted: dict[int, set[str]] = {}
    for rows in sheets.values():
        for _, tiles in rows:
            for row, target, _ in tiles:
                wanted.setdefault(row, set()).add(target)
    crops, maps = _crops_and_maps(model.build_network().to(device), images, wanted, device)
    folder = out_dir / GALLERY_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    side = max(MIN_TILE_SIDE, model.image_size)
    written = {}
    for target, rows in sheets.items():
        drawn = [(title, [(_tile(crops[row], maps[row, name], side), caption) for row, name, caption in tiles])
                 for title, tiles in rows]
        sheet = contact_sheet(target.replace("_", " "), drawn, int(galleries["size"]), side)
        path = folder / fit_name(f"{target}.png")
        palette = sheet.quantize(PALETTE_COLOURS)
        write_exclusive(path, lambda file, palette=palette: palette.save(file, format="PNG", optimize=True))
        written[target] = path
    return written


def _crops_and_maps(network: torch.nn.Module, images: Dataset, wanted: Mapping[int, set[str]], device: torch.device
                    ) -> tuple[dict[int, np.ndarray], dict[tuple[int, str], np.ndarray]]:
    """The ``(S, S, 3)`` uint8 crop of each wanted row and its ``(S, S)`` map for each of its targets."""
    rows = sorted(wanted)
    crops: dict[int, np.ndarray] = {}
    maps: dict[tuple[int, str], np.ndarray] = {}
    for start in range(0, len(rows), BATCH_SIZE):
        batch = rows[start:start + BATCH_SIZE]
        tensors = torch.stack([images[row]["image"] for row in batch])
        targets = set().union(*(wanted[row] for row in batch))
        raising = sorted(targets - {LOWERING_BEAUTY})
        cams = grad_cam(network, tensors.to(device), raising) if raising else {}
        if LOWERING_BEAUTY in targets:
            lowering = grad_cam(_LoweringBeauty(network), tensors.to(device), [BEAUTY_TARGET])
            cams[LOWERING_BEAUTY] = lowering[BEAUTY_TARGET]
        for position, row in enumerate(batch):
            crops[row] = tensors[position].permute(1, 2, 0).numpy()
            for target in wanted[row]:
                maps[row, target] = cams[target][position].cpu().numpy()
    return crops, maps


def _tile(crop: np.ndarray, cam: np.ndarray, side: int) -> Image.Image:
    """The crop with its map over it, enlarged to ``side`` pixels."""
    return Image.fromarray(overlay(crop, cam)).resize((side, side), Image.Resampling.BICUBIC)


def contact_sheet(title: str, rows: Sequence[tuple[str, Sequence[tuple[Image.Image, str]]]], columns: int,
                  side: int) -> Image.Image:
    """A titled sheet of rows of captioned square tiles, on white.

    Args:
        title: The sheet's heading.
        rows: ``(row title, [(tile, caption), ...])``; a row without tiles says so.
        columns: Tiles per row the sheet is wide enough for (more are cut).
        side: Each tile's side in pixels.

    Returns:
        The RGB sheet.

    >>> tile = Image.new("RGB", (8, 8))
    >>> full = contact_sheet("Bald", [("a row", [(tile, "p = 0.9")]), ("another", [(tile, "p = 0.8")])], 2, 8)
    >>> one_empty = contact_sheet("Bald", [("a row", [(tile, "p = 0.9")]), ("empty", [])], 2, 8)
    >>> full.size[1] - one_empty.size[1] == 8 + _CAPTION_HEIGHT + _GAP  # the empty row has no band of tiles
    True
    """
    columns = max(columns, 1)
    width = max(_GAP + columns * (side + _GAP), 480)
    # A row without tiles is its title line alone ("...: none"), not a blank band the height of tiles.
    height = _TITLE_HEIGHT + sum(_ROW_TITLE_HEIGHT + (side + _CAPTION_HEIGHT + _GAP if tiles else 0)
                                 for _, tiles in rows) + _GAP
    sheet = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((_GAP, 4), title, fill=_INK, font=_font(16))
    top = _TITLE_HEIGHT
    for row_title, tiles in rows:
        draw.text((_GAP, top + 3), row_title if tiles else f"{row_title}: none", fill=_INK, font=_font(12))
        top += _ROW_TITLE_HEIGHT
        for column, (tile, caption) in enumerate(tiles[:columns]):
            left = _GAP + column * (side + _GAP)
            sheet.paste(tile, (left, top))
            draw.text((left + side // 2, top + side + 2), caption, fill=_INK, font=_font(12), anchor="ma")
        if tiles:
            top += side + _CAPTION_HEIGHT + _GAP
    return sheet


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's own font at ``size`` (no font file needed)."""
    return ImageFont.load_default(size=size)
