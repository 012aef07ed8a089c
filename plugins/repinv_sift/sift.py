"""Sparse SIFT: OpenCV's SIFT keypoints and descriptors, one keypoint per cell of a regular grid.

The paper (Dosovitskiy & Brox 2016, sparse SIFT) turns a set of SIFT keypoints into a feature map: the image is
cut into cells of ``d x d`` pixels; a cell without a keypoint gets a zero vector, a cell with one gets the
keypoint's descriptor, its position inside the cell, the sine and cosine of its orientation and the logarithm
of its scale; a cell with several keypoints gets one of them chosen at random. This module computes it with
OpenCV's ``cv2.SIFT.create()`` (default settings: 3 layers per octave, contrast threshold 0.04, edge threshold
10, sigma 1.6, the image upsampled 2x first, no limit on the number of keypoints) and
``detectAndCompute`` on the grayscale image.

Conventions (``D = 128`` descriptor values, feature map ``(D + 5, ceil(H / d), ceil(W / d))``):

* **Gray image.** BT.601 luma (:func:`repinv.representation.rgb_to_gray`, float32) of the RGB image in [0, 1],
  then ``round(255 * gray)`` clamped to 0..255 as ``uint8``, what OpenCV's SIFT expects; ``round`` is
  :func:`numpy.rint`, i.e. halves go to the even integer (as :func:`torch.round`).
* **Coordinates and cells.** ``(x, y) = kp.pt`` as OpenCV reports it, in pixels, ``x`` to the right, ``y``
  down, the centre of pixel ``(row i, column j)`` at ``(j, i)``. (OpenCV, 5.0 as installed here, maps its 2x
  upsampled first octave back by halving coordinates, which puts points a quarter pixel right of and below
  where they are, in every octave: a blob centred at ``(30.3, 25.7)`` is reported at ``(30.55, 25.95)``. This
  module keeps OpenCV's coordinates as they are.)
  The keypoint belongs to cell ``(floor(y / d), floor(x / d))`` (clamped into the grid; OpenCV's border margin
  keeps points inside the image anyway) and its in-cell position is ``x mod d = x - d * floor(x / d)`` and
  likewise for ``y``: real numbers in ``[0, d)``, not pixel indices, so ``1.75`` means 1.75 pixels right of the
  cell's left edge *coordinate* ``d * floor(x / d)`` (which is the centre of that cell's first pixel column).
* **Orientation.** ``alpha = radians(kp.angle)``, with ``kp.angle`` in ``[0, 360)`` degrees as OpenCV reports it:
  the direction of the dominant gradient (dark to bright) measured in image coordinates, ``x`` right and ``y``
  down, so ``alpha`` grows *clockwise* on screen and ``(cos alpha, sin alpha)`` is that direction as ``(dx, dy)``
  in pixel coordinates. OpenCV builds its orientation histogram counterclockwise with ``y`` up and reports
  ``360 - angle``, which is this clockwise angle; rotating an image 90 degrees clockwise adds 90 degrees.
* **Scale.** ``log(sigma)`` with ``sigma = kp.size / 2``: OpenCV's ``kp.size`` is a diameter, twice the
  keypoint's Gaussian scale ``sigma`` in input-image pixels (VLFeat's frame scale). On 64x64 photos
  ``log(sigma)`` ranges from about -0.1 (``sigma`` 0.9, the 2x upsampled first octave) to about 2.5, median 0.3.
* **Descriptor.** OpenCV returns Lowe's descriptor (normalized to unit length, clipped at 0.2, renormalized)
  times 512, rounded and saturated to 0..255 (stored as float). It is divided by 512 here, back to the unit-norm
  clipped vector (to OpenCV's 1/512 quantization), so its values, like the other five, are O(1).
* **Several keypoints in a cell.** OpenCV returns the same point several times when its orientation histogram
  has several peaks; those, like distinct points falling into one cell, are several keypoints in a cell. One is
  chosen uniformly at random by a NumPy generator seeded with the ``seed`` option and a BLAKE2b hash of the
  ``uint8`` gray image (its size and bytes), independently of the order OpenCV lists them in: the same image
  always gives the same features, another ``seed`` may pick other keypoints.
* **No keypoints** (a constant image; often a very small one, since OpenCV ignores a 5-pixel border of every
  octave): an all-zero map, not an error.

Channels, per cell: ``[0, 128)`` descriptor / 512, then ``x mod d``, ``y mod d``, ``sin alpha``,
``cos alpha``, ``log sigma``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor

from repinv.errors import UnknownVariant
from repinv.options import Option, option_defaults, validate_options
from repinv.representations.base import FeatureSpec, Representation, rgb_to_gray
from repinv.utils import check_images

__all__ = [
    "SIFT",
    "OPTIONS",
    "DEFAULTS",
    "DESCRIPTOR_SIZE",
    "DESCRIPTOR_SCALE",
    "CHANNELS",
    "Keypoints",
    "create_sift",
    "detect",
    "gray_uint8",
    "sift_grid_size",
    "sparse_sift",
    "cell_features",
]

#: The options of ``sift``; ``SIFT.config()`` returns all of them.
OPTIONS = (
    Option("cell_size", 4, int, "cell side d in pixels (4 in the paper)", minimum=1),
    Option("seed", 0, int, "mixed with a hash of each image to choose among several keypoints in a cell", minimum=0),
)
#: Options and their defaults.
DEFAULTS: dict[str, Any] = option_defaults(OPTIONS)
#: Length of a SIFT descriptor (4 x 4 spatial bins x 8 orientations).
DESCRIPTOR_SIZE = 128
#: OpenCV's descriptors are 512 times Lowe's unit-norm clipped vector; this undoes it.
DESCRIPTOR_SCALE = 1.0 / 512.0
#: Channels per cell: descriptor, ``x mod d``, ``y mod d``, ``sin alpha``, ``cos alpha``, ``log sigma``.
CHANNELS = DESCRIPTOR_SIZE + 5


class Keypoints(NamedTuple):
    """SIFT keypoints of one image, as arrays (OpenCV's conventions; see the module docstring)."""

    xy: np.ndarray  #: ``(N, 2)`` float64 ``kp.pt``: ``x`` right, ``y`` down, pixel centres at integers
    size: np.ndarray  #: ``(N,)`` float64 ``kp.size``: the diameter, ``2 sigma``
    angle: np.ndarray  #: ``(N,)`` float64 ``kp.angle`` in degrees, clockwise on screen, ``[0, 360)``
    descriptors: np.ndarray  #: ``(N, 128)`` float32 as OpenCV returns them (0..255)

    @classmethod
    def empty(cls) -> Keypoints:
        """No keypoints."""
        return cls(np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros((0, DESCRIPTOR_SIZE), np.float32))


def sift_grid_size(image_size: tuple[int, int], cell_size: int) -> tuple[int, int]:
    """Number of cells ``(ceil(H / d), ceil(W / d))`` for an image of ``(H, W)`` pixels: partial cells count."""
    height, width = image_size
    return -(-int(height) // cell_size), -(-int(width) // cell_size)


@functools.lru_cache(maxsize=1)
def _detector() -> cv2.SIFT:
    """One default ``cv2.SIFT`` per process (it holds only its settings, so it is safe to share and to fork)."""
    return cv2.SIFT.create()


@contextmanager
def _single_threaded_opencv() -> Iterator[None]:
    """Run OpenCV serially for the duration of the block, then restore its thread count.

    SIFT on a small image gains nothing from OpenCV's thread pool (measured at 64x64: 1.6 ms with 1 thread, 1.7 ms
    with 2), and this runs in data-loader worker processes: a pool per worker would oversubscribe the cores the
    workers already share, and a pool created in the parent before the fork is not valid in the children (OpenCV
    with pthreads can hang there). With one thread ``parallel_for_`` runs in the calling thread and never
    touches the pool. The setting is process-wide, hence restored afterwards.
    """
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def gray_uint8(images: Tensor) -> np.ndarray:
    """BT.601 luma of RGB images in [0, 1] as OpenCV's ``uint8``: ``round(255 * gray)`` clamped to 0..255.

    Args:
        images: ``(B, 3, H, W)`` RGB images, float in [0, 1] (any device; values outside are clamped).

    Returns:
        ``(B, H, W)`` ``uint8`` array, C-contiguous.
    """
    # On the CPU before any arithmetic, so the rounding (and so the keypoints) never depends on the device.
    gray = rgb_to_gray(images.detach().cpu().float())[:, 0].numpy()
    # np.rint rounds halves to even, as torch.round does; NumPy is much cheaper than torch for one small image.
    return np.ascontiguousarray(np.clip(np.rint(gray * np.float32(255)), 0, 255).astype(np.uint8))


def detect(gray: np.ndarray) -> Keypoints:
    """OpenCV's default SIFT keypoints and descriptors of one image (``detectAndCompute``).

    Args:
        gray: ``(H, W)`` ``uint8`` image.

    Returns:
        The keypoints, possibly none.
    """
    with _single_threaded_opencv():
        keypoints, descriptors = _detector().detectAndCompute(gray, None)
    if not keypoints or descriptors is None:
        return Keypoints.empty()
    return Keypoints(xy=np.array([kp.pt for kp in keypoints], dtype=np.float64).reshape(-1, 2),
                     size=np.array([kp.size for kp in keypoints], dtype=np.float64),
                     angle=np.array([kp.angle for kp in keypoints], dtype=np.float64),
                     descriptors=np.asarray(descriptors, dtype=np.float32).reshape(-1, DESCRIPTOR_SIZE))


def cell_features(keypoints: Keypoints, cell_size: int) -> np.ndarray:
    """The ``D + 5`` values each keypoint contributes to its cell.

    Args:
        keypoints: ``N`` keypoints.
        cell_size: cell side ``d`` in pixels.

    Returns:
        ``(N, 133)`` float32: descriptor / 512, ``x mod d``, ``y mod d``, ``sin alpha``, ``cos alpha``,
        ``log(size / 2)``.
    """
    alpha = np.radians(keypoints.angle)
    extra = np.stack([np.mod(keypoints.xy[:, 0], cell_size), np.mod(keypoints.xy[:, 1], cell_size),
                      np.sin(alpha), np.cos(alpha), np.log(keypoints.size / 2)], axis=1)
    return np.concatenate([keypoints.descriptors * np.float32(DESCRIPTOR_SCALE), extra.astype(np.float32)], axis=1)


def _generator(gray: np.ndarray, seed: int) -> np.random.Generator:
    """A generator determined by the image (its size and ``uint8`` bytes) and ``seed``."""
    digest = hashlib.blake2b(np.ascontiguousarray(gray).tobytes(), digest_size=16,
                             person=b"repinv-sift").digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng([seed, *gray.shape, *words])


def sparse_sift(gray: np.ndarray, cell_size: int = 4, seed: int = 0, keypoints: Keypoints | None = None) -> np.ndarray:
    """The sparse SIFT feature map of one grayscale image.

    Args:
        gray: ``(H, W)`` ``uint8`` image.
        cell_size: cell side ``d`` in pixels.
        seed: mixed with a hash of ``gray`` to seed the choice among several keypoints in a cell.
        keypoints: the keypoints to use; ``None`` detects them with :func:`detect`.

    Returns:
        The feature map, zero in cells without a keypoint.

    Shape:
        ``(H, W)`` → ``(133, ceil(H / d), ceil(W / d))``, float32.
    """
    rows, columns = sift_grid_size(gray.shape, cell_size)
    features = np.zeros((CHANNELS, rows * columns), dtype=np.float32)
    if keypoints is None:
        keypoints = detect(gray)
    count = len(keypoints.size)
    if count == 0:
        return features.reshape(CHANNELS, rows, columns)
    # A canonical order (x, y, size, angle) so the choice never depends on how OpenCV lists them (it removes
    # keypoints equal in all four, so there are no ties).
    order = np.lexsort((keypoints.angle, keypoints.size, keypoints.xy[:, 1], keypoints.xy[:, 0]))
    keypoints = Keypoints(*(array[order] for array in keypoints))
    row = np.clip(np.floor(keypoints.xy[:, 1] / cell_size), 0, rows - 1).astype(np.int64)
    column = np.clip(np.floor(keypoints.xy[:, 0] / cell_size), 0, columns - 1).astype(np.int64)
    cell = row * columns + column
    # A uniform choice per cell: the keypoint with the largest random key.
    keys = _generator(gray, seed).random(count)
    by_cell = np.lexsort((keys, cell))
    sorted_cells = cell[by_cell]
    last = np.ones(count, dtype=bool)
    last[:-1] = sorted_cells[1:] != sorted_cells[:-1]
    chosen = by_cell[last]
    features[:, cell[chosen]] = cell_features(Keypoints(*(array[chosen] for array in keypoints)), cell_size).T
    return features.reshape(CHANNELS, rows, columns)


class SIFT(Representation):
    """Sparse SIFT (the paper's): OpenCV's SIFT keypoints, at most one per ``d x d`` cell, as a feature map.

    Each cell holds ``(descriptor / 512, x mod d, y mod d, sin alpha, cos alpha, log sigma)`` of one of its
    keypoints (chosen at random, reproducibly, when it has several) or zeros; see the module docstring for the
    conventions. Serial CPU work per image (``per_image``), not differentiable.

    Args:
        cell_size: cell side ``d`` in pixels (4 in the paper).
        seed: mixed with a hash of each image to choose among several keypoints in a cell.

    Shape:
        - Input: ``(B, 3, H, W)`` RGB in [0, 1], on any device; converted to BT.601 luma, then ``uint8``.
        - Output: ``(B, 133, ceil(H / d), ceil(W / d))`` on the input's device, in its dtype.

    Example:
        >>> SIFT()(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 133, 16, 16])
    """

    name = "sift"
    differentiable = False
    per_image = True

    def __init__(self, cell_size: int = 4, seed: int = 0) -> None:
        super().__init__()
        options = validate_options("sift", {"cell_size": cell_size, "seed": seed}, OPTIONS)
        self.cell_size: int = options["cell_size"]
        self.seed: int = options["seed"]

    @property
    def dimension(self) -> int:
        """Channels per cell: 128 descriptor values and 5 keypoint values."""
        return CHANNELS

    def forward(self, images: Tensor) -> Tensor:
        """Compute sparse SIFT features, one image after another (the work is serial OpenCV code).

        Args:
            images: ``(B, 3, H, W)`` RGB images, float in [0, 1]; a data-loader worker passes ``B = 1``.

        Returns:
            ``(B, 133, ceil(H / d), ceil(W / d))`` features on the images' device, in their dtype.
        """
        height, width = check_images(images)
        rows, columns = sift_grid_size((height, width), self.cell_size)
        if images.shape[0] == 0:
            return images.new_zeros(0, CHANNELS, rows, columns)
        maps = [sparse_sift(gray, self.cell_size, self.seed) for gray in gray_uint8(images)]
        return torch.from_numpy(np.stack(maps)).to(device=images.device, dtype=images.dtype)

    def spec(self, image_size: tuple[int, int]) -> FeatureSpec:
        """``FeatureSpec((133, ceil(H / d), ceil(W / d)))``, without running SIFT."""
        height, width = int(image_size[0]), int(image_size[1])
        return FeatureSpec((CHANNELS, *sift_grid_size((height, width), self.cell_size)))

    def config(self) -> dict[str, Any]:
        """All options, JSON-able: ``create_representation("sift", **config)`` rebuilds this representation."""
        return {"cell_size": self.cell_size, "seed": self.seed}

    def extra_repr(self) -> str:
        """The options, for ``repr``."""
        return ", ".join(f"{key}={value}" for key, value in self.config().items())


def create_sift(variant: str | None = None, **options: Any) -> SIFT:
    """The ``sift`` factory: validate the options and build :class:`SIFT`.

    Args:
        variant: must be ``None``: sparse SIFT has no variants.
        **options: ``cell_size`` (positive int, default 4), ``seed`` (non-negative int, default 0).

    Returns:
        The representation.

    Raises:
        UnknownVariant: a variant was given.
        InvalidOption: an unknown option, or a bad value.
    """
    if variant is not None:
        raise UnknownVariant(variant, available=[])
    return SIFT(**validate_options("sift", options, OPTIONS))
