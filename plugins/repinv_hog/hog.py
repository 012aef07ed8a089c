"""HOG features, UoCTTI variant, computed as VLFeat's ``vl_hog`` computes them, batched in torch.

The paper inverts HOG as computed by VLFeat (``vl_hog(im, 8)``): the UoCTTI variant of Felzenszwalb et al., 31
dimensions per cell for 9 orientations. This module reproduces VLFeat 0.9.21's ``vl_hog_put_image`` +
``vl_hog_extract`` (``VlHogVariantUoctti``, ``transposed = false``) to float rounding:

* gradients by central differences (no 1/2 factor) at every pixel but the one-pixel image border;
* each gradient goes, weighted by its magnitude, to the nearest of the ``2n`` directed orientations ``k pi / n``.
  VLFeat picks it as the largest ``|gx cos_k + gy sin_k|`` over the ``n`` undirected ones, the first on ties (an
  odd ``n`` puts a tie at 90 degrees: every purely vertical gradient). With ``bilinear_orientations`` (VLFeat's
  ``vl_hog_set_use_bilinear_orientation_assignments``, off by default) it is split linearly in angle between
  the two nearest directed orientations;
* it is spread over the 4 nearest cells by bilinear interpolation around the cell centres, on a grid of
  ``(H + c // 2) // c`` by ``(W + c // 2) // c`` cells (a last cell at least half inside the image counts);
* each cell is normalized by the 4 blocks of 2x2 cells containing it (undirected energy ``+ 1e-4``; at the grid
  edge a missing neighbour is replaced by the edge cell), each normalized value is clamped at 0.2, and the 4
  copies are summed and halved; the 4 texture features are the sums of the clamped undirected values per
  block, times ``1 / sqrt(18)`` (whatever ``n``).

Channels are VLFeat's: ``[0, 2n)`` directed, ``[2n, 3n)`` undirected, ``[3n, 3n + 4)`` texture (blocks up-left,
up-right, down-left, down-right), each a ``(rows, columns)`` plane, as ``vl_hog_extract`` lays them out.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from repinv.errors import ShapeError, UnknownVariant
from repinv.options import Option, option_defaults, validate_options
from repinv.representations.base import FeatureSpec, Representation, rgb_to_gray
from repinv.utils import check_images

__all__ = ["HOG", "OPTIONS", "DEFAULTS", "create_hog", "hog_uoctti", "hog_grid_size", "direction_table"]

#: The options of ``hog``; ``HOG.config()`` returns all of them.
OPTIONS = (
    Option("cell_size", 8, int, "cell side in pixels (VLFeat's cellSize; 8 in the paper)", minimum=1),
    Option("orientations", 9, int, "undirected orientations n (VLFeat's numOrientations; 9 in the paper)",
           minimum=1),
    Option("bilinear_orientations", False, bool, "split each gradient between its two nearest orientations"),
)
#: Options and their defaults.
DEFAULTS: dict[str, Any] = option_defaults(OPTIONS)

# VLFeat multiplies by the float 1.0f / sqrtf(18.0f), whatever the number of orientations.
_TEXTURE_SCALE = float(torch.tensor(1.0 / math.sqrt(18.0), dtype=torch.float32))
# Images are processed in chunks of about this many pixels: on CPU so per-pixel temporaries stay in cache, on
# GPUs to bound memory (about 100 bytes per pixel) while keeping kernels large.
_CHUNK_PIXELS = 1 << 17
_CHUNK_PIXELS_ACCELERATOR = 1 << 23


def hog_grid_size(image_size: tuple[int, int], cell_size: int) -> tuple[int, int]:
    """VLFeat's number of cells ``(rows, columns)`` for an image of ``(H, W)`` pixels."""
    height, width = image_size
    return (height + cell_size // 2) // cell_size, (width + cell_size // 2) // cell_size


@functools.lru_cache(maxsize=32)
def direction_table(orientations: int, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """VLFeat's ``(2, n)`` table of ``cos`` and ``sin`` of ``k pi / n``: computed in double, stored as float32."""
    angles = [k * math.pi / orientations for k in range(orientations)]
    with torch.inference_mode(False):  # cached: must stay usable outside inference mode
        table = torch.tensor([[math.cos(a) for a in angles], [math.sin(a) for a in angles]], dtype=torch.float32)
        return table.to(device=device, dtype=dtype)


class _Polar(torch.autograd.Function):
    """Gradient magnitude (VLFeat's ``sqrtf(gx*gx + gy*gy)``, to an ulp) and angle ``atan2(gy, gx)``.

    Autograd's own ``sqrt`` and ``atan2`` give NaN gradients where the image gradient vanishes (flat regions are
    common); such pixels contribute nothing, so their gradient is zero here.
    """

    @staticmethod
    def forward(ctx: Any, gx: Tensor, gy: Tensor) -> tuple[Tensor, Tensor]:
        squared = gx * gx + gy * gy
        ctx.save_for_backward(gx, gy, squared)
        return squared.sqrt(), torch.atan2(gy, gx)

    @staticmethod
    def backward(ctx: Any, grad_magnitude: Tensor | None, grad_angle: Tensor | None) -> tuple[Tensor, Tensor]:
        gx, gy, squared = ctx.saved_tensors
        safe = torch.where(squared > 0, squared, 1.0)
        grad_x = torch.zeros_like(gx)
        grad_y = torch.zeros_like(gy)
        if grad_magnitude is not None:
            scale = grad_magnitude * safe.rsqrt()
            grad_x, grad_y = grad_x + scale * gx, grad_y + scale * gy
        if grad_angle is not None:
            scale = grad_angle / safe
            grad_x, grad_y = grad_x - scale * gy, grad_y + scale * gx
        live = squared > 0
        return grad_x * live, grad_y * live


def _polar(gx: Tensor, gy: Tensor) -> tuple[Tensor, Tensor]:
    """Magnitude and angle of the gradients; through :class:`_Polar` only when a gradient is needed (its
    machinery costs more than the arithmetic at small batches)."""
    if torch.is_grad_enabled() and (gx.requires_grad or gy.requires_grad):
        polar: tuple[Tensor, Tensor] = _Polar.apply(gx, gy)  # Function.apply returns Any in torch's stubs
        return polar
    return (gx * gx + gy * gy).sqrt_(), torch.atan2(gy, gx)


def _vlfeat_bins(gx: Tensor, gy: Tensor, table: Tensor, second: bool = True) -> tuple[Tensor, Tensor]:
    """The two directed bins VLFeat's loop picks, float op by float op: ``(P,)`` gradients → two ``(P,)`` int64.

    VLFeat scores undirected orientation ``k`` by ``gx * cos_k + gy * sin_k`` (raw gradient, two roundings and a
    sum), flips a negative score to bin ``k + n``, and scans ``k`` upwards keeping the first strictly largest
    (from an initial -1) and, among the others, the first strictly largest as the second bin (computed only
    when ``second``; otherwise the first bin is returned twice).
    """
    n = table.shape[1]
    scores = gx * table[0, :, None] + gy * table[1, :, None]
    magnitudes = scores.abs()
    best = magnitudes.max(dim=0).indices  # the first maximal index, like the strict ">" scan
    runner_up = magnitudes.scatter_(0, best[None], -1.0).max(dim=0).indices if second and n > 1 else best
    signs = scores.gather(0, torch.stack([best, runner_up])) < 0
    return best + n * signs[0], runner_up + n * signs[1]


def _orientation_slots(orientations: int) -> int:
    """Number of histogram planes votes go to before wrapping: unwrapped bins ``-n - 1 .. n + 1``."""
    return 2 * orientations + 3


def _orientation_bins(angle: Tensor, gx: Tensor, gy: Tensor, table: Tensor,
                      bilinear: bool) -> tuple[Tensor, Tensor | None]:
    """Directed bins of every gradient, unwrapped: the nearest one, and for ``bilinear`` the other neighbour.

    Bins are read off the angle and left unwrapped, in ``[-n - 1, n + 1]``: bin ``b`` stands for the directed
    orientation ``b mod 2n``. Wrapping per pixel costs a division; :func:`hog_uoctti` wraps the few histogram
    planes instead. Where rounding decides, VLFeat's own float comparison (:func:`_vlfeat_bins`) is replayed on
    those few gradients so the result agrees with it bit for bit: near a boundary between two bins for the
    nearest bin (an odd ``n`` puts one at 90 degrees: every purely vertical gradient), near a bin centre for the
    second one (which gets a tiny weight there, e.g. a diagonal gradient for ``n = 4``). Bilinear weights are
    continuous across boundaries, so there it does not matter which side wins.

    Args:
        angle: ``(...)`` ``atan2(gy, gx)``.
        gx: ``(...)`` horizontal central differences.
        gy: ``(...)`` vertical central differences.
        table: VLFeat's direction table, same dtype and device.
        bilinear: also return the second bin.

    Returns:
        ``(nearest, second)``: unwrapped bins shaped like ``angle``, whole numbers in its dtype (the vote's index
        arithmetic stays in floating point, where it is fastest); ``second`` is ``None`` unless ``bilinear`` and
        ``n > 1`` (VLFeat has no second bin for ``n = 1``).
    """
    n = table.shape[1]
    position = angle * (n / math.pi)  # in bins, [-n, n]
    nearest = position.round()
    offset = position.sub_(nearest)
    # VLFeat's float scores err by about n^2 1e-8 bins; the margin stays far outside that.
    margin = min(0.5, 1e-3 + 1e-6 * n * n)
    second = None
    if bilinear and n > 1:
        second = nearest + offset.sign()
        replay = offset.abs_() < margin
    else:
        replay = offset.abs_() > 0.5 - margin
    flat = replay.view(-1).nonzero().squeeze(1)
    if flat.numel():
        first, runner_up = _vlfeat_bins(gx.reshape(-1)[flat], gy.reshape(-1)[flat], table, second is not None)
        nearest.view(-1)[flat] = _unwrapped(first, n).to(nearest.dtype)
        if second is not None:
            second.view(-1)[flat] = _unwrapped(runner_up, n).to(second.dtype)
    return nearest, second


def _unwrapped(bins: Tensor, n: int) -> Tensor:
    """Directed bins ``[0, 2n)`` as unwrapped bins in ``[-n - 1, n + 1]``."""
    return torch.where(bins > n + 1, bins - 2 * n, bins)


@functools.lru_cache(maxsize=32)
def _wrapping(orientations: int, device: torch.device | str = "cpu") -> Tensor:
    """For each histogram plane (unwrapped bin ``-n - 1 .. n + 1``), its directed bin."""
    with torch.inference_mode(False):  # cached: must stay usable outside inference mode
        unwrapped = torch.arange(-orientations - 1, orientations + 2)
        return unwrapped.remainder(2 * orientations).to(device)


def _bin_distance(angle: Tensor, gx: Tensor, gy: Tensor, nearest: Tensor, table: Tensor) -> Tensor:
    """Angular distance from each gradient to its nearest bin, in bins: VLFeat's bilinear weight of the second bin.

    VLFeat computes it as ``acosf(score / norm) / (pi / n)``; near a bin centre ``acosf`` turns the rounding of
    its float argument into errors of up to 1e-3 bins. In float32 those values are reproduced (the forward value
    is VLFeat's, the gradient that of the exact distance); in other dtypes the exact distance is used. Torch's
    vectorized float ``sqrt`` and ``acos`` are not correctly rounded, so those two are taken in double.
    """
    n = table.shape[1]
    exact = (angle * (n / math.pi) - (angle.detach() * (n / math.pi)).round()).abs()
    if angle.dtype != torch.float32:
        return exact
    with torch.no_grad():
        undirected = nearest.long().remainder_(n).view(-1)
        score = (gx.reshape(-1) * table[0, undirected] + gy.reshape(-1) * table[1, undirected]).abs_()
        norm = (gx * gx + gy * gy).reshape(-1).double().sqrt_().float().double()  # VLFeat's sqrtf
        ratio = (score.double() / norm.clamp_min_(1e-10)).clamp_max_(1.0)
        angle0 = ratio.float().double().acos_().float()
        vlfeat = (angle0.double() / (math.pi / n)).float().view_as(exact)
    return exact + (vlfeat - exact.detach())


class Geometry(NamedTuple):
    """Where each interior pixel's vote goes, for one image size (see :func:`spatial_geometry`)."""

    base: Tensor  #: ``(P,)`` flat histogram index of the pixel's up-left cell in unwrapped bin 0's plane, as a float
    weights: Tensor  #: ``(4, P)`` bilinear weights: up-left, up-right, down-left, down-right
    offsets: tuple[int, int, int, int]  #: flat index offsets of those four cells from the up-left one
    rows: int  #: cell rows (VLFeat's hogHeight)
    columns: int  #: cell columns (VLFeat's hogWidth)


def _cell_weights(size: int, cell_size: int) -> tuple[list[int], list[float], list[float]]:
    """For pixels ``1 .. size - 2``: the cell before it (may be -1) and the weights of that cell and the next."""
    first, near, far = [], [], []
    for x in range(1, size - 1):
        # VLFeat: hx = (x + 0.5) / cellSize - 0.5 in double, stored as float, then split at floor(hx).
        h = float(torch.tensor((x + 0.5) / cell_size - 0.5, dtype=torch.float32))
        b = math.floor(h)
        first.append(b)
        far.append(h - b)
        near.append(1.0 - (h - b))
    return first, near, far


def spatial_geometry(height: int, width: int, cell_size: int, orientations: int,
                     device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Geometry:
    """Bilinear spatial binning of the ``(H - 2) x (W - 2)`` interior pixels into a padded cell grid.

    The grid has an extra cell on every side: votes VLFeat drops (they fall outside the grid) land there and are
    cropped off, so no masks are needed. Votes are accumulated per orientation plane of ``(rows + 2) *
    (columns + 2)`` cells, one plane per unwrapped bin (:func:`_orientation_slots`).

    Args:
        height: image height ``H``.
        width: image width ``W``.
        cell_size: cell side in pixels.
        orientations: number of undirected orientations ``n``.
        device: where the tensors live.
        dtype: dtype of the weights.

    Returns:
        The :class:`Geometry`.
    """
    rows, columns = hog_grid_size((height, width), cell_size)
    y_first, y_near, y_far = (torch.tensor(v, dtype=torch.float64) for v in _cell_weights(height, cell_size))
    x_first, x_near, x_far = (torch.tensor(v, dtype=torch.float64) for v in _cell_weights(width, cell_size))
    stride = columns + 2
    zero_plane = (orientations + 1) * (rows + 2) * stride  # unwrapped bins start at -n - 1
    base = ((y_first + 1)[:, None] * stride + (x_first + 1)[None, :]).flatten() + zero_plane
    weights = torch.stack([y_near[:, None] * x_near, y_near[:, None] * x_far,
                           y_far[:, None] * x_near, y_far[:, None] * x_far]).flatten(1)
    # Indices are whole floats of the images' dtype, or float64 beyond float32's exact whole numbers.
    index_dtype = torch.float64 if _orientation_slots(orientations) * (rows + 2) * stride >= 1 << 24 else dtype
    return Geometry(base.to(device=device, dtype=index_dtype), weights.to(device=device, dtype=dtype),
                    (0, 1, stride, stride + 1), rows, columns)


def _vote(histogram: Tensor, bins: Tensor, votes: Tensor, geometry: Geometry) -> None:
    """Add ``votes`` ``(B, P)`` to unwrapped ``bins`` ``(B, P)`` (whole floats, overwritten) of ``histogram``
    ``(B, slots * plane)``, each split over its 4 cells."""
    plane = (geometry.rows + 2) * (geometry.columns + 2)
    # The index is computed in floating point and converted once: int64 arithmetic is far slower here.
    target = bins.to(geometry.base.dtype).mul_(plane).add_(geometry.base).long()
    # One index serves all four cells: each corner writes into the histogram shifted by its offset.
    for weight, offset in zip(geometry.weights, geometry.offsets, strict=True):
        histogram[:, offset:].scatter_add_(1, target, votes * weight)


def hog_uoctti(gray: Tensor, cell_size: int = 8, orientations: int = 9, bilinear_orientations: bool = False,
               geometry: Geometry | None = None) -> Tensor:
    """UoCTTI HOG of a batch of grayscale images, as VLFeat computes it.

    Args:
        gray: ``(B, H, W)`` grayscale images, ``H, W >= 4``.
        cell_size: cell side in pixels.
        orientations: number of undirected orientations ``n``.
        bilinear_orientations: split each vote between the two nearest orientations.
        geometry: :func:`spatial_geometry` for this size, ``n``, device and dtype (computed when ``None``).

    Returns:
        The features, channels in VLFeat's order (directed, undirected, texture).

    Shape:
        ``(B, H, W)`` → ``(B, 3n + 4, (H + cell_size // 2) // cell_size, (W + cell_size // 2) // cell_size)``.
    """
    batch, height, width = gray.shape
    n = orientations
    gray = gray.contiguous()  # e.g. channels-last images: the flat views below need a plain layout
    if geometry is None:
        geometry = spatial_geometry(height, width, cell_size, n, gray.device, gray.dtype)
    table = direction_table(n, gray.device, gray.dtype)

    gx = gray[:, 1:-1, 2:] - gray[:, 1:-1, :-2]
    gy = gray[:, 2:, 1:-1] - gray[:, :-2, 1:-1]
    magnitude, angle = _polar(gx, gy)
    with torch.no_grad():
        nearest, second = _orientation_bins(angle, gx, gy, table, bilinear_orientations)
    slots = _orientation_slots(n)
    histogram = gray.new_zeros(batch, slots * (geometry.rows + 2) * (geometry.columns + 2))
    if bilinear_orientations:
        distance = _bin_distance(angle, gx, gy, nearest, table).view(batch, -1)
        votes = magnitude.view(batch, -1)
        _vote(histogram, nearest.view(batch, -1), votes - votes * distance, geometry)
        if second is not None:
            _vote(histogram, second.view(batch, -1), votes * distance, geometry)
    else:
        _vote(histogram, nearest.view(batch, -1), magnitude.view(batch, -1), geometry)
    unwrapped = histogram.view(batch, slots, geometry.rows + 2, geometry.columns + 2)
    directed = unwrapped.new_zeros(batch, 2 * n, geometry.rows + 2, geometry.columns + 2)
    # Wrapped and then cropped: index_add_ on the contiguous histogram is twice as fast as on the cropped view.
    return _normalize(directed.index_add_(1, _wrapping(n, gray.device), unwrapped)[:, :, 1:-1, 1:-1], n)


def _normalize(directed: Tensor, n: int) -> Tensor:
    """VLFeat's UoCTTI block normalization and projection of ``(B, 2n, h, w)`` histograms to ``3n + 4`` channels."""
    undirected = directed[:, :n] + directed[:, n:]
    energy = undirected.square().sum(1, keepdim=True)
    # VLFeat clamps neighbour indices to the grid: an edge cell stands in for its missing neighbours.
    padded = torch.cat([energy[..., :1, :], energy, energy[..., -1:, :]], dim=-2)
    padded = torch.cat([padded[..., :1], padded, padded[..., -1:]], dim=-1)  # F.pad(replicate) is slow on CPU
    blocks = padded[..., :-1, :-1] + padded[..., :-1, 1:] + padded[..., 1:, :-1] + padded[..., 1:, 1:]
    inverse = (blocks + 1e-4).rsqrt()
    factors = torch.cat([inverse[..., :-1, :-1], inverse[..., :-1, 1:],
                         inverse[..., 1:, :-1], inverse[..., 1:, 1:]], dim=1).unsqueeze(2)  # (B, 4, 1, h, w)
    directed_part = (directed.unsqueeze(1) * factors).clamp_max(0.2).sum(1).mul(0.5)
    clamped = (undirected.unsqueeze(1) * factors).clamp_max(0.2)  # (B, 4, n, h, w)
    undirected_part = clamped.sum(1).mul(0.5)
    texture = clamped.sum(2).mul(_TEXTURE_SCALE)
    return torch.cat([directed_part, undirected_part, texture], dim=1)


class HOG(Representation):
    """HOG, UoCTTI variant (``3n + 4`` dims per cell, 31 for 9 orientations), as VLFeat's ``vl_hog`` computes it.

    Args:
        cell_size: cell side in pixels (VLFeat's ``cellSize``; 8 in the paper).
        orientations: number of undirected orientations ``n`` (VLFeat's ``numOrientations``; 9 in the paper).
        bilinear_orientations: split each gradient between its two nearest orientations (VLFeat's option, off
            by default). Off, features are piecewise constant in the gradient angle, so gradients with respect to
            the image flow through magnitudes only; on, they also flow through orientations.

    Shape:
        - Input: ``(B, 3, H, W)`` RGB in [0, 1], ``H, W >= max(4, ceil(cell_size / 2))``; converted to BT.601 luma.
        - Output: ``(B, 3n + 4, (H + cell_size // 2) // cell_size, (W + cell_size // 2) // cell_size)``.

    Example:
        >>> HOG(cell_size=8)(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 31, 8, 8])
    """

    name = "hog"
    differentiable = True
    per_image = False

    def __init__(self, cell_size: int = 8, orientations: int = 9, bilinear_orientations: bool = False) -> None:
        super().__init__()
        options = validate_options("hog", {"cell_size": cell_size, "orientations": orientations,
                                           "bilinear_orientations": bilinear_orientations}, OPTIONS)
        self.cell_size: int = options["cell_size"]
        self.orientations: int = options["orientations"]
        self.bilinear_orientations: bool = options["bilinear_orientations"]
        self._geometry: dict[tuple[Any, ...], Geometry] = {}

    @property
    def dimension(self) -> int:
        """Channels per cell: ``2n`` directed, ``n`` undirected, 4 texture."""
        return 3 * self.orientations + 4

    def forward(self, images: Tensor) -> Tensor:
        """Compute HOG features.

        Args:
            images: ``(B, 3, H, W)`` RGB images, float in [0, 1].

        Returns:
            ``(B, 3n + 4, h, w)`` features in the images' dtype (computed in float32 for half precision).
        """
        height, width = check_images(images)
        self._check_size(height, width)
        dtype = images.dtype
        if dtype in (torch.float16, torch.bfloat16):  # bins and norms need more than 8-11 bits of mantissa
            images = images.float()
        geometry = self._cached_geometry(height, width, images)
        chunk = _CHUNK_PIXELS if images.device.type == "cpu" else _CHUNK_PIXELS_ACCELERATOR
        step = max(1, chunk // (height * width))
        chunks = [hog_uoctti(rgb_to_gray(part)[:, 0], self.cell_size, self.orientations,
                             self.bilinear_orientations, geometry) for part in torch.split(images, step)]
        return (chunks[0] if len(chunks) == 1 else torch.cat(chunks)).to(dtype)

    def spec(self, image_size: tuple[int, int]) -> FeatureSpec:
        """``FeatureSpec((3n + 4, h, w))`` from VLFeat's grid rule, without computing anything."""
        height, width = int(image_size[0]), int(image_size[1])
        self._check_size(height, width)
        return FeatureSpec((self.dimension, *hog_grid_size((height, width), self.cell_size)))

    def config(self) -> dict[str, Any]:
        """All options, JSON-able: ``create_representation("hog", **config)`` rebuilds this representation."""
        return {"cell_size": self.cell_size, "orientations": self.orientations,
                "bilinear_orientations": self.bilinear_orientations}

    def extra_repr(self) -> str:
        """The options, for ``repr``."""
        return ", ".join(f"{key}={value}" for key, value in self.config().items())

    def _check_size(self, height: int, width: int) -> None:
        # VLFeat asserts width, height > 3; one cell needs side + cell_size // 2 >= cell_size.
        least = max(4, self.cell_size - self.cell_size // 2)
        if height < least or width < least:
            raise ShapeError(f"hog with cell_size={self.cell_size} needs images of at least {least}x{least} "
                             f"pixels, got {height}x{width}")

    def _cached_geometry(self, height: int, width: int, like: Tensor) -> Geometry:
        key = (height, width, like.device, like.dtype)
        if key not in self._geometry:
            if len(self._geometry) >= 16:  # many sizes (e.g. multi-scale use): keep memory bounded
                self._geometry.clear()
            with torch.inference_mode(False):  # cached: must stay usable by autograd later
                self._geometry[key] = spatial_geometry(height, width, self.cell_size, self.orientations,
                                                       like.device, like.dtype)
        return self._geometry[key]


def create_hog(variant: str | None = None, **options: Any) -> HOG:
    """The ``hog`` factory: validate the options and build :class:`HOG`.

    Args:
        variant: must be ``None``: HOG has no variants.
        **options: ``cell_size`` (positive int, default 8), ``orientations`` (positive int, default 9),
            ``bilinear_orientations`` (bool, default false).

    Returns:
        The representation.

    Raises:
        UnknownVariant: a variant was given.
        InvalidOption: an unknown option, or a bad value.
    """
    if variant is not None:
        raise UnknownVariant(variant, available=[])
    return HOG(**validate_options("hog", options, OPTIONS))
