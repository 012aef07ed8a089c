"""Uniform LBP features computed as VLFeat's ``vl_lbp_process`` computes them, batched in torch.

The paper inverts LBP as computed by VLFeat (``vl_lbp(im, 16)``): 3x3 local binary patterns, quantized to 58
"uniform" patterns, histogrammed over cells. This module reproduces VLFeat 0.9.21's ``vl_lbp_new(VlLbpUniform,
false)`` + ``vl_lbp_process`` on a row-major image to float rounding:

* at every pixel but the one-pixel image border, an 8-bit string: bit ``k`` is set when neighbour ``k`` is
  strictly brighter than the centre, with the neighbours in the order east, south-east, south, south-west, west,
  north-west, north, north-east (rows grow downwards, so this is clockwise on screen; VLFeat's documentation
  says anti-clockwise, its code does this). Only comparisons are used, so the image's scale does not matter;
* the strings are quantized to 58 bins: a circular run of ``j`` ones (``1 <= j <= 7``) starting at bit ``i``
  goes to bin ``7 i + j - 1`` (56 bins), the constant strings ``0x00`` and ``0xff`` to bin 56, every other
  string to bin 57. MATLAB's ``vl_lbp`` passes ``transposed = true`` for its column-major images, which gives
  the same bins as this row-major computation;
* each pixel's pattern is spread over the 4 nearest cells by bilinear interpolation around the cell centres:
  pixel ``y`` sits at ``(y + 0.5) / cell_size - 0.5`` cells (float32 arithmetic), and a weight that falls
  outside the grid is dropped. The grid has ``H // cell_size`` by ``W // cell_size`` cells: unlike HOG's, a
  partial last cell never counts, and the pixels beyond the last full cell only feed it through their weights;
* each cell's histogram ``h`` becomes ``sqrt(h) / (sqrt(sum(h)) + 1e-10)``: the square root of the
  L1-normalized histogram, so each cell's feature has unit L2 norm (the Hellinger map).

Channels are VLFeat's 58 bins, each a ``(rows, columns)`` plane, as ``vl_lbp_process`` lays them out.

The features are piecewise constant in the pixels (comparisons), so no gradient reaches the image.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch
from torch import Tensor

from repinv.errors import ShapeError, UnknownVariant
from repinv.options import Option, option_defaults, validate_options
from repinv.representations.base import FeatureSpec, Representation, rgb_to_gray
from repinv.utils import check_images

__all__ = ["LBP", "OPTIONS", "DEFAULTS", "DIMENSION", "NEIGHBOURS", "create_lbp", "lbp_uniform", "lbp_codes",
           "lbp_grid_size", "uniform_mapping"]

#: The options of ``lbp``; ``LBP.config()`` returns all of them.
OPTIONS = (Option("cell_size", 16, int, "cell side in pixels (VLFeat's cellSize; 16 in the paper)", minimum=1),)
#: Options and their defaults.
DEFAULTS: dict[str, Any] = option_defaults(OPTIONS)

#: Bins per cell: 56 uniform patterns, one for the two constant ones, one for all the others.
DIMENSION = 58

#: ``(dy, dx)`` of the neighbour behind each bit, bit 0 first: E, SE, S, SW, W, NW, N, NE (rows grow downwards).
NEIGHBOURS: tuple[tuple[int, int], ...] = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))

# VLFeat adds this to the square root of the cell's mass before dividing (an empty cell stays zero).
_EPSILON = 1e-10
# Patterns are computed in chunks of about this many pixels: on CPU large enough that every operation keeps two
# threads busy and small enough that the temporaries (about 16 bytes per pixel) stay near the cores (measured with
# bench/features.py: 1 << 17 and 1 << 21 were both slower at 256 px); on accelerators to bound memory.
_CHUNK_PIXELS = 1 << 20
_CHUNK_PIXELS_ACCELERATOR = 1 << 23


def lbp_grid_size(image_size: tuple[int, int], cell_size: int) -> tuple[int, int]:
    """VLFeat's number of cells ``(rows, columns)`` for an image of ``(H, W)`` pixels: only whole cells count."""
    height, width = image_size
    return height // cell_size, width // cell_size


@functools.lru_cache(maxsize=8)
def uniform_mapping(device: torch.device | str = "cpu") -> Tensor:
    """VLFeat's ``VlLbpUniform`` quantization: a ``(256,)`` int64 table from 8-bit string to bin in ``[0, 58)``.

    Args:
        device: where the table lives.

    Returns:
        The table: ``7 i + j - 1`` for a circular run of ``j`` ones starting at bit ``i``, 56 for ``0x00`` and
        ``0xff``, 57 for the rest.
    """
    table = [DIMENSION - 1] * 256
    table[0x00] = table[0xFF] = DIMENSION - 2
    for start in range(8):
        for run in range(1, 8):
            ones = (1 << run) - 1
            rotated = ((ones << start) | (ones >> (8 - start))) & 0xFF
            table[rotated] = 7 * start + run - 1
    with torch.inference_mode(False):  # cached: must stay usable outside inference mode
        return torch.tensor(table, dtype=torch.int64, device=device)


def lbp_codes(gray: Tensor) -> Tensor:
    """The 8-bit local binary pattern of every interior pixel.

    Args:
        gray: ``(B, H, W)`` grayscale images, ``H, W >= 3``.

    Returns:
        uint8 bit strings, bit ``k`` set when neighbour :data:`NEIGHBOURS` ``[k]`` is strictly brighter than the
        centre (convert with ``.long()`` before indexing with them: a uint8 index is a mask).

    Shape:
        ``(B, H, W)`` → ``(B, H - 2, W - 2)``.
    """
    return _codes(gray).to(torch.uint8)


def _codes(gray: Tensor) -> Tensor:
    """:func:`lbp_codes` as int64 (an index). Each comparison is written straight into a buffer of the image's
    float type and added with its bit's weight (sums of distinct powers of two below 256: exact), then converted
    once: torch's CPU kernels vectorize these, while bool results and uint8 shifts took 3-4 times longer and int32
    accumulation about 20% longer (and int64 arithmetic is not vectorized on AVX2)."""
    height, width = gray.shape[-2:]
    center = gray[..., 1:-1, 1:-1]
    codes = torch.zeros_like(center)
    bit = torch.empty_like(codes)
    for k, (dy, dx) in enumerate(NEIGHBOURS):
        torch.gt(gray[..., 1 + dy:height - 1 + dy, 1 + dx:width - 1 + dx], center, out=bit)
        codes.add_(bit, alpha=1 << k)
    return codes.long()


class Geometry(NamedTuple):
    """Where each used pixel's vote goes, for one image size (see :func:`spatial_geometry`)."""

    base: Tensor  #: ``(P,)`` int64 flat index of the pixel's up-left cell in the padded grid
    weights: Tensor  #: ``(4, P)`` float32 bilinear weights: up-left, up-right, down-left, down-right
    offsets: tuple[int, int, int, int]  #: flat index offsets of those four cells from the up-left one
    rows: int  #: cell rows
    columns: int  #: cell columns
    used_rows: int  #: pixel rows ``1 .. used_rows`` vote; VLFeat skips those below, whose cells are all outside
    used_columns: int  #: likewise for pixel columns


def _axis_weights(size: int, cell_size: int, cells: int) -> tuple[Tensor, Tensor, Tensor]:
    """For pixels ``1, 2, ...`` along one axis: the cell before each (may be -1) and the weights of it and the next.

    Computed in float32 op by op as VLFeat does, so the weights are VLFeat's to the bit. Pixels whose first cell
    is past the grid are left out (VLFeat skips them); they only ever come at the end.
    """
    position = torch.arange(1, max(size - 1, 1), dtype=torch.float32)
    position = (position + 0.5) / float(cell_size) - 0.5
    first = position.floor()
    far = position - first
    near = 1.0 - far
    used = int((first < cells).sum())
    return first[:used].long(), near[:used], far[:used]


def spatial_geometry(height: int, width: int, cell_size: int,
                     device: torch.device | str = "cpu") -> Geometry:
    """Bilinear spatial binning of the interior pixels into a padded cell grid.

    The grid has an extra cell on every side: votes VLFeat drops (they fall outside the grid) land there and are
    cropped off, so no masks are needed. Votes are accumulated per bin plane of ``(rows + 2) * (columns + 2)``
    cells.

    Args:
        height: image height ``H``.
        width: image width ``W``.
        cell_size: cell side in pixels.
        device: where the tensors live.

    Returns:
        The :class:`Geometry`.
    """
    rows, columns = lbp_grid_size((height, width), cell_size)
    y_first, y_near, y_far = _axis_weights(height, cell_size, rows)
    x_first, x_near, x_far = _axis_weights(width, cell_size, columns)
    stride = columns + 2
    base = ((y_first + 1)[:, None] * stride + (x_first + 1)[None, :]).flatten()
    # float32 products, as VLFeat's wx * wy.
    weights = torch.stack([y_near[:, None] * x_near, y_near[:, None] * x_far,
                           y_far[:, None] * x_near, y_far[:, None] * x_far]).flatten(1)
    return Geometry(base.to(device), weights.to(device), (0, 1, stride, stride + 1), rows, columns,
                    len(y_first), len(x_first))


def lbp_uniform(gray: Tensor, cell_size: int = 16, geometry: Geometry | None = None) -> Tensor:
    """Uniform LBP of a batch of grayscale images, as VLFeat computes it.

    Args:
        gray: ``(B, H, W)`` grayscale images, ``H, W >= max(3, cell_size)``.
        cell_size: cell side in pixels.
        geometry: :func:`spatial_geometry` for this size and device (computed when ``None``).

    Returns:
        float32 features, channels in VLFeat's bin order; no gradient flows back to ``gray``.

    Shape:
        ``(B, H, W)`` → ``(B, 58, H // cell_size, W // cell_size)``.
    """
    if geometry is None:
        geometry = spatial_geometry(gray.shape[1], gray.shape[2], cell_size, gray.device)
    with torch.no_grad():
        return _cell_histograms(_vote_targets(gray, geometry), geometry)


def _vote_targets(gray: Tensor, geometry: Geometry, out: Tensor | None = None) -> Tensor:
    """Where each voting pixel's pattern goes: its bin's plane in the flat histogram plus its up-left cell.

    Shape:
        gray: ``(B, H, W)``; returns ``(B, P)`` int64 (written into ``out`` when given), P the voting pixels.
    """
    # Only the pixels VLFeat lets vote, plus their one-pixel ring of neighbours.
    used = gray[:, :geometry.used_rows + 2, :geometry.used_columns + 2]
    plane = (geometry.rows + 2) * (geometry.columns + 2)
    # Each pattern's plane offset in one table lookup: gather on the table broadcast over the batch runs on all
    # threads, 1.5-4x faster than index_select or advanced indexing here.
    batch = gray.shape[0]
    offsets = (uniform_mapping(gray.device) * plane).expand(batch, -1)
    target = torch.gather(offsets, 1, _codes(used).view(batch, -1), out=out)
    return target.add_(geometry.base)


def _cell_histograms(targets: Tensor, geometry: Geometry) -> Tensor:
    """Bilinear votes into the padded cell grid, then VLFeat's normalization (square root of the L1-normalized
    histogram); one pass per corner for all images at once, so the batch dimension spreads the votes over the
    CPU's threads.

    Shape:
        targets: ``(B, P)`` from :func:`_vote_targets`; returns ``(B, 58, rows, columns)`` float32.
    """
    batch = targets.shape[0]
    plane = (geometry.rows + 2) * (geometry.columns + 2)
    histogram = torch.zeros(batch, DIMENSION * plane, dtype=torch.float32, device=targets.device)
    # One index serves all four cells: each corner writes into the histogram shifted by its offset.
    for weight, offset in zip(geometry.weights, geometry.offsets, strict=True):
        histogram[:, offset:].scatter_add_(1, targets, weight.expand(batch, -1))
    cells = histogram.view(batch, DIMENSION, geometry.rows + 2, geometry.columns + 2)[:, :, 1:-1, 1:-1]
    # The square root of a contiguous copy: on the strided view it was the slowest step at 64x64.
    return cells.contiguous().sqrt_() / (cells.sum(1, keepdim=True).sqrt() + _EPSILON)


class LBP(Representation):
    """Uniform LBP (58 dims per cell), as VLFeat's ``vl_lbp`` computes it.

    Args:
        cell_size: cell side in pixels (VLFeat's ``cellSize``; 16 in the paper).

    Shape:
        - Input: ``(B, 3, H, W)`` RGB in [0, 1], ``H, W >= max(3, cell_size)``; converted to BT.601 luma.
        - Output: ``(B, 58, H // cell_size, W // cell_size)``.

    Example:
        >>> LBP(cell_size=16)(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 58, 4, 4])
    """

    name = "lbp"
    differentiable = False  # bit strings come from comparisons: the features are piecewise constant in pixels
    per_image = False

    def __init__(self, cell_size: int = 16) -> None:
        super().__init__()
        self.cell_size: int = validate_options("lbp", {"cell_size": cell_size}, OPTIONS)["cell_size"]
        self._geometry: dict[tuple[Any, ...], Geometry] = {}

    @property
    def dimension(self) -> int:
        """Channels per cell: 58."""
        return DIMENSION

    def forward(self, images: Tensor) -> Tensor:
        """Compute LBP features.

        Args:
            images: ``(B, 3, H, W)`` RGB images, float in [0, 1].

        Returns:
            ``(B, 58, H // cell_size, W // cell_size)`` features in the images' dtype (float32 for float32
            images), with no gradient.
        """
        height, width = check_images(images)
        self._check_size(height, width)
        dtype = images.dtype
        if dtype in (torch.float16, torch.bfloat16):  # 8-11 bits of luma would turn many pixels into ties
            images = images.float()
        geometry = self._cached_geometry(height, width, images.device)
        chunk = _CHUNK_PIXELS if images.device.type == "cpu" else _CHUNK_PIXELS_ACCELERATOR
        step = max(1, chunk // (height * width))
        with torch.no_grad():
            # Chunk by chunk, so temporaries stay in cache; one index buffer serves every chunk (a fresh one each
            # time cost page faults).
            targets = torch.empty(min(step, images.shape[0]), geometry.base.numel(), dtype=torch.int64,
                                  device=images.device)
            chunks = [_cell_histograms(_vote_targets(rgb_to_gray(part)[:, 0], geometry, out=targets[:len(part)]),
                                       geometry) for part in torch.split(images, step)]
            return (chunks[0] if len(chunks) == 1 else torch.cat(chunks)).to(dtype)

    def spec(self, image_size: tuple[int, int]) -> FeatureSpec:
        """``FeatureSpec((58, h, w))`` from VLFeat's grid rule, without computing anything."""
        height, width = int(image_size[0]), int(image_size[1])
        self._check_size(height, width)
        return FeatureSpec((DIMENSION, *lbp_grid_size((height, width), self.cell_size)))

    def config(self) -> dict[str, Any]:
        """All options, JSON-able: ``create_representation("lbp", **config)`` rebuilds this representation."""
        return {"cell_size": self.cell_size}

    def extra_repr(self) -> str:
        """The options, for ``repr``."""
        return ", ".join(f"{key}={value}" for key, value in self.config().items())

    def _check_size(self, height: int, width: int) -> None:
        # A pattern needs a 3x3 neighbourhood, and VLFeat's grid only counts whole cells.
        least = max(3, self.cell_size)
        if height < least or width < least:
            raise ShapeError(f"lbp with cell_size={self.cell_size} needs images of at least {least}x{least} "
                             f"pixels, got {height}x{width}")

    def _cached_geometry(self, height: int, width: int, device: torch.device) -> Geometry:
        key = (height, width, device)
        if key not in self._geometry:
            if len(self._geometry) >= 16:  # many sizes (e.g. multi-scale use): keep memory bounded
                self._geometry.clear()
            with torch.inference_mode(False):  # cached: must stay usable outside inference mode
                self._geometry[key] = spatial_geometry(height, width, self.cell_size, device)
        return self._geometry[key]


def create_lbp(variant: str | None = None, **options: Any) -> LBP:
    """The ``lbp`` factory: validate the options and build :class:`LBP`.

    Args:
        variant: must be ``None``: LBP has no variants.
        **options: ``cell_size`` (positive int, default 16).

    Returns:
        The representation.

    Raises:
        UnknownVariant: a variant was given.
        InvalidOption: an unknown option, or a bad value.
    """
    if variant is not None:
        raise UnknownVariant(variant, available=[])
    return LBP(**validate_options("lbp", options, OPTIONS))
