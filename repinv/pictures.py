"""PNG grids for people to look at: (original | reconstruction) pairs, and tables of images with labelled columns.

Training samples and evaluation write pairs (:func:`write_pairs_grid`); ``repinv compare``, ``repinv analyze``,
interpolation strips and random-feature samples write tables (:func:`write_image_table`). Every grid has 2-pixel
white padding between images, and every file is written atomically.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import make_grid

from repinv.files import atomic_write

__all__ = ["write_pairs_grid", "write_image_table", "GRID_ROWS", "PADDING", "LABEL_WIDTH"]

#: Test images (rows) shown in the grids of evaluate, compare and analyze.
GRID_ROWS = 8
#: White pixels between (and around) the images of a grid.
PADDING = 2
#: Labelled columns are at least this wide, so a short label fits above each.
LABEL_WIDTH = 80
_LINE_HEIGHT = 13
_FONT_SIZE = 11


def write_pairs_grid(images: Tensor, reconstructions: Tensor, path: str | Path, pairs_per_row: int = 4) -> Path:
    """Write a PNG grid of (original | reconstruction) pairs, ``pairs_per_row`` pairs per row.

    Args:
        images: the originals.
        reconstructions: their reconstructions (clamped to [0, 1]).
        path: the PNG file.
        pairs_per_row: pairs side by side in one row.

    Returns:
        ``path``.

    Shape:
        images, reconstructions: ``(B, 3, H, W)``.
    """
    pairs = torch.stack([images.float().cpu(), reconstructions.detach().float().clamp(0, 1).cpu()], dim=1)
    picture = _picture(make_grid(pairs.flatten(0, 1), nrow=2 * pairs_per_row, padding=PADDING, pad_value=1.0))
    atomic_write(Path(path), lambda p: picture.save(p, format="PNG"))
    return Path(path)


def write_image_table(columns: Sequence[Tensor], path: str | Path, labels: Sequence[str] | None = None) -> Path:
    """Write a PNG table of images: ``columns[j][i]`` is row ``i``, column ``j``; optional column labels on top.

    Without labels the PNG is ``R·(H+2)+2`` pixels high and ``C·(W+2)+2`` wide. Labels add a header band, and
    images narrower than :data:`LABEL_WIDTH` are then enlarged by an integer factor (nearest neighbour, so pixels
    stay visible as pixels) to make room for them. A label is wrapped after ``+``, ``:``, ``-`` and ``/`` when too
    wide for its column, and a piece still too wide is cut short with ``…``, so labels never overlap.

    Args:
        columns: ``C`` tensors, clamped to [0, 1].
        path: the PNG file.
        labels: one label per column.

    Returns:
        ``path``.

    Shape:
        columns: each ``(R, 3, H, W)``, the same for all.
    """
    if labels is not None and len(labels) != len(columns):
        raise ValueError(f"{len(labels)} labels for {len(columns)} columns")
    stacked = torch.stack([c.detach().float().clamp(0, 1).cpu() for c in columns], dim=1)  # (R, C, 3, H, W)
    factor = -(-LABEL_WIDTH // stacked.shape[-1]) if labels else 1
    images = stacked.flatten(0, 1).repeat_interleave(factor, dim=-1).repeat_interleave(factor, dim=-2)
    picture = _picture(make_grid(images, nrow=len(columns), padding=PADDING, pad_value=1.0))
    if labels:
        picture = _with_header(picture, labels, images.shape[-1] + PADDING)
    atomic_write(Path(path), lambda p: picture.save(p, format="PNG"))
    return Path(path)


def _picture(grid: Tensor) -> Image.Image:
    # rounded, not truncated: a value of 0.5 is stored as 128
    return Image.fromarray((grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())


def _with_header(picture: Image.Image, labels: Sequence[str], pitch: int) -> Image.Image:
    font = ImageFont.load_default(size=_FONT_SIZE)
    measure = ImageDraw.Draw(picture)
    room = pitch - 2 * PADDING

    def fits(text: str) -> bool:
        return measure.textlength(text, font=font) <= room

    wrapped = []
    for label in labels:
        lines: list[str] = []
        for piece in re.split(r"(?<=[+:/-])", label):
            if lines and fits(lines[-1] + piece):
                lines[-1] += piece
            else:
                lines.append(piece)
        wrapped.append([_cut_to_fit(line, fits) for line in lines])
    band = _LINE_HEIGHT * max(len(lines) for lines in wrapped) + 2 * PADDING
    out = Image.new("RGB", (picture.width, picture.height + band), "white")
    out.paste(picture, (0, band))
    draw = ImageDraw.Draw(out)
    for j, lines in enumerate(wrapped):
        for k, line in enumerate(lines):
            x = PADDING + j * pitch + (pitch - PADDING - draw.textlength(line, font=font)) / 2
            draw.text((x, PADDING + k * _LINE_HEIGHT), line, fill="black", font=font)
    return out


def _cut_to_fit(line: str, fits: Callable[[str], bool]) -> str:
    if fits(line):
        return line
    while len(line) > 1 and not fits(line + "…"):
        line = line[:-1]
    return line + "…"
