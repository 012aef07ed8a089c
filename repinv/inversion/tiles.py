"""Inversion at any image size: a fully convolutional decoder applied to the features of a whole photo.

HOG, LBP and sparse SIFT give maps whose size follows the image's, one cell per ``cell`` pixels, and a decoder made
only of convolutions (the ``conv`` decoder) maps a larger map to a larger image. A photo of any size is padded at
its bottom and right edges to whole cells (edge pixels repeated), inverted, and cropped back.

Large photos go through in overlapping tiles, so memory stays bounded: each tile is inverted with a margin of
``margin_cells`` cells of context on every side that has any, and only its centre is kept. Tile edges fall on cell
boundaries, so a tile's features equal the whole photo's away from the margin; with a margin wider than the
representation's and the decoder's reach, the tiles agree with the untiled result (tests: within 2/255).

Networks that resize every image to a fixed input (AlexNet, timm layers) and decoders with fully connected layers
cannot do this; :func:`cell_size` says so in one line.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from repinv.errors import ShapeError
from repinv.representations.base import Representation

__all__ = ["TILE", "MARGIN_CELLS", "ALIGN_CELLS", "cell_size", "reconstruct_tiled"]

#: Largest side, in pixels, inverted in one piece; larger photos go through in tiles of about this size.
TILE = 1024
#: Cells of context around every tile: more than 3 convolutions at the map's resolution and the up-convolutions
#: reach (5x5 kernels), and HOG's block normalization.
MARGIN_CELLS = 16
#: Tiles and margins start at multiples of this many cells, so a decoder's stride-2 contractions (up to three)
#: sample the same grid in every tile as in the whole photo.
ALIGN_CELLS = 8


def cell_size(representation: Representation, image_size: tuple[int, int]) -> tuple[int, int]:
    """Pixels per feature cell ``(cy, cx)`` of a representation whose feature map follows the image size.

    Args:
        representation: the representation.
        image_size: ``(H, W)`` the decoder was trained on.

    Returns:
        ``(H // h, W // w)`` for the map ``(C, h, w)`` it gives at ``image_size``.

    Raises:
        ShapeError: its features are a vector, or a map that keeps its size when the image doubles (a network that
            resizes every image), or a map that does not divide the image into whole cells.
    """
    height, width = image_size
    spec = representation.spec(image_size)
    name = representation.name
    if spec.kind != "map":
        raise ShapeError(f"{name} gives a feature vector, which has no size to follow: it reconstructs "
                         f"{height}x{width} images only (use --size training)")
    rows, cols = spec.shape[1:]
    doubled = representation.spec((2 * height, 2 * width)).shape[1:]
    if doubled != (2 * rows, 2 * cols) or height % rows or width % cols:
        raise ShapeError(f"{name}'s feature map does not follow the image size ({height}x{width} gives {rows}x{cols}, "
                         f"{2 * height}x{2 * width} gives {doubled[0]}x{doubled[1]}; a network resizes every image "
                         f"to its input): it reconstructs {height}x{width} images only (use --size training)")
    return height // rows, width // cols


def _whole(images: Tensor, features_of: Callable[[Tensor], Tensor], decode_map: Callable[[Tensor], Tensor],
           cell: tuple[int, int], scale: tuple[float, float]) -> Tensor:
    """Invert images whose sides are whole cells, in one piece."""
    features = features_of(images)
    expected = (images.shape[-2] // cell[0], images.shape[-1] // cell[1])
    if tuple(features.shape[-2:]) != expected:
        raise ShapeError(f"features of {images.shape[-2]}x{images.shape[-1]} images are {features.shape[-2]}x"
                         f"{features.shape[-1]} cells, not {expected[0]}x{expected[1]}: the representation's cells "
                         "do not tile this size")
    decoded = decode_map(features)
    if scale != (1.0, 1.0):  # a decoder trained to predict smaller images than it saw
        decoded = F.interpolate(decoded, scale_factor=scale, mode="bilinear", align_corners=False)
    # A map of an odd number of cells comes out of a stride-2 contraction rounded up: the extra row and column are
    # past the bottom and right edges (every layer is aligned to the top left), so they are cut off.
    if decoded.shape[-2] < images.shape[-2] or decoded.shape[-1] < images.shape[-1]:
        raise ShapeError(f"the decoder made {decoded.shape[-2]}x{decoded.shape[-1]} images from the features of "
                         f"{images.shape[-2]}x{images.shape[-1]} images")
    return decoded[..., :images.shape[-2], :images.shape[-1]]


def reconstruct_tiled(images: Tensor, features_of: Callable[[Tensor], Tensor], decode_map: Callable[[Tensor], Tensor],
                      cell: tuple[int, int], scale: tuple[float, float] = (1.0, 1.0), tile: int = TILE,
                      margin_cells: int = MARGIN_CELLS) -> Tensor:
    """Reconstruct images at their own size, in overlapping tiles when larger than ``tile``.

    Args:
        images: the photos.
        features_of: their features (any size that is whole cells).
        decode_map: a fully convolutional decoder's output for a feature map of any size.
        cell: pixels per feature cell ``(cy, cx)`` (:func:`cell_size`).
        scale: how much the decoder's output must grow to reach the image size it was trained on (below 1 never).
        tile: the largest side inverted in one piece (rounded down to a multiple of :data:`ALIGN_CELLS` cells).
        margin_cells: cells of context kept around every tile (rounded up to a multiple of :data:`ALIGN_CELLS`).

    Returns:
        The reconstructions, not clamped.

    Shape:
        images: ``(B, 3, H, W)``, any ``H, W``; returns ``(B, 3, H, W)``.
    """
    height, width = images.shape[-2:]
    cy, cx = cell
    padded = F.pad(images, (0, math.ceil(width / cx) * cx - width, 0, math.ceil(height / cy) * cy - height),
                   mode="replicate")
    full_height, full_width = padded.shape[-2:]
    step_y, step_x = (max(1, tile // (c * ALIGN_CELLS)) * c * ALIGN_CELLS for c in cell)
    if full_height <= step_y and full_width <= step_x:
        return _whole(padded, features_of, decode_map, cell, scale)[..., :height, :width]
    margin_y, margin_x = (-(-margin_cells // ALIGN_CELLS) * ALIGN_CELLS * c for c in cell)
    out = padded.new_empty(padded.shape)
    for top in range(0, full_height, step_y):
        bottom = min(top + step_y, full_height)
        above, below = max(0, top - margin_y), min(full_height, bottom + margin_y)
        for left in range(0, full_width, step_x):
            right = min(left + step_x, full_width)
            before, after = max(0, left - margin_x), min(full_width, right + margin_x)
            piece = _whole(padded[..., above:below, before:after], features_of, decode_map, cell, scale)
            out[..., top:bottom, left:right] = piece[..., top - above:bottom - above, left - before:right - before]
    return out[..., :height, :width]
