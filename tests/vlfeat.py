"""A small ctypes wrapper of VLFeat (Debian's ``libvlfeat1``), the reference the HOG and LBP plugins are tested against.

Only what the tests need is wrapped: HOG (``vl_hog_*``) and LBP (``vl_lbp_*``) on one grayscale image. Every
function takes a ``(H, W)`` float32 numpy image and returns the features VLFeat computes for it, laid out as
VLFeat stores them (``(dimension, rows, columns)``: one plane per histogram bin, rows of cells, columns of cells).

When the library is missing, :func:`load` returns ``None`` and :data:`MISSING` is the reason to skip with.

Example:
    >>> lib = load()
    >>> if lib is None:
    ...     pytest.skip(MISSING)
    >>> features = hog(image, cell_size=8)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

import numpy as np

__all__ = ["MISSING", "load", "available", "hog", "lbp"]

#: The reason given when tests that need VLFeat are skipped.
MISSING = "libvlfeat1 not found: apt install libvlfeat1"

_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libvl.so.1", "/usr/lib/aarch64-linux-gnu/libvl.so.1", "libvl.so.1")

# enum VlHogVariant_ { VlHogVariantDalalTriggs, VlHogVariantUoctti }
_HOG_UOCTTI = 1
_HOG_DALAL_TRIGGS = 0
# enum VlLbpMappingType { VlLbpUniform }
_LBP_UNIFORM = 0

_size = ctypes.c_size_t  # vl_size
_bool = ctypes.c_int  # vl_bool
_float_p = ctypes.POINTER(ctypes.c_float)


@functools.lru_cache(maxsize=1)
def load() -> ctypes.CDLL | None:
    """Load ``libvl`` and declare the prototypes used here.

    Returns:
        The library, or ``None`` when it is not installed (or lacks the HOG/LBP symbols).
    """
    names = [os.environ["REPINV_LIBVL"]] if os.environ.get("REPINV_LIBVL") else []
    found = ctypes.util.find_library("vl")
    names += ([found] if found else []) + list(_CANDIDATES)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            _declare(lib)
        except AttributeError:
            continue
        return lib
    return None


def available() -> bool:
    """Whether VLFeat can be used."""
    return load() is not None


def _declare(lib: ctypes.CDLL) -> None:
    lib.vl_hog_new.argtypes = [ctypes.c_int, _size, _bool]
    lib.vl_hog_new.restype = ctypes.c_void_p
    lib.vl_hog_delete.argtypes = [ctypes.c_void_p]
    lib.vl_hog_delete.restype = None
    lib.vl_hog_put_image.argtypes = [ctypes.c_void_p, _float_p, _size, _size, _size, _size]
    lib.vl_hog_put_image.restype = None
    lib.vl_hog_extract.argtypes = [ctypes.c_void_p, _float_p]
    lib.vl_hog_extract.restype = None
    for getter in ("vl_hog_get_width", "vl_hog_get_height", "vl_hog_get_dimension"):
        getattr(lib, getter).argtypes = [ctypes.c_void_p]
        getattr(lib, getter).restype = _size
    lib.vl_hog_set_use_bilinear_orientation_assignments.argtypes = [ctypes.c_void_p, _bool]
    lib.vl_hog_set_use_bilinear_orientation_assignments.restype = None
    # VLFeat 0.9.21: vl_lbp_new(VlLbpMappingType type, vl_bool transposed)
    lib.vl_lbp_new.argtypes = [ctypes.c_int, _bool]
    lib.vl_lbp_new.restype = ctypes.c_void_p
    lib.vl_lbp_delete.argtypes = [ctypes.c_void_p]
    lib.vl_lbp_delete.restype = None
    lib.vl_lbp_get_dimension.argtypes = [ctypes.c_void_p]
    lib.vl_lbp_get_dimension.restype = _size
    lib.vl_lbp_process.argtypes = [ctypes.c_void_p, _float_p, _float_p, _size, _size, _size]
    lib.vl_lbp_process.restype = None


def _require() -> ctypes.CDLL:
    lib = load()
    if lib is None:
        raise RuntimeError(MISSING)
    return lib


def _gray(image: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 ``(H, W)`` copy: VLFeat reads rows with x varying fastest (``transposed=false``)."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"VLFeat wrappers take a grayscale (H, W) image, got shape {image.shape}")
    return image


def _ptr(array: np.ndarray) -> ctypes._Pointer:  # type: ignore[type-arg]
    return array.ctypes.data_as(_float_p)


def hog(image: np.ndarray, cell_size: int = 8, orientations: int = 9, variant: str = "uoctti",
        bilinear_orientations: bool = False) -> np.ndarray:
    """VLFeat HOG of one grayscale image.

    Args:
        image: ``(H, W)`` grayscale image (VLFeat needs ``H, W > 3``).
        cell_size: cell side in pixels.
        orientations: number of undirected orientations.
        variant: ``"uoctti"`` (``3 * orientations + 4`` dims) or ``"dalaltriggs"`` (``4 * orientations``).
        bilinear_orientations: ``vl_hog_set_use_bilinear_orientation_assignments`` (VLFeat's default is off).

    Returns:
        ``(dimension, hogHeight, hogWidth)`` float32 features, VLFeat's layout.

    Shape:
        image ``(H, W)`` → ``(D, (H + cell_size // 2) // cell_size, (W + cell_size // 2) // cell_size)``.
    """
    lib = _require()
    image = _gray(image)
    height, width = image.shape
    if height <= 3 or width <= 3:
        raise ValueError(f"VLFeat HOG needs images larger than 3x3, got {height}x{width}")
    kind = {"uoctti": _HOG_UOCTTI, "dalaltriggs": _HOG_DALAL_TRIGGS}[variant]
    handle = lib.vl_hog_new(kind, orientations, 0)
    try:
        lib.vl_hog_set_use_bilinear_orientation_assignments(handle, int(bilinear_orientations))
        lib.vl_hog_put_image(handle, _ptr(image), width, height, 1, cell_size)
        dims = (lib.vl_hog_get_dimension(handle), lib.vl_hog_get_height(handle), lib.vl_hog_get_width(handle))
        features = np.empty(dims, dtype=np.float32)
        lib.vl_hog_extract(handle, _ptr(features))
    finally:
        lib.vl_hog_delete(handle)
    return features


def lbp(image: np.ndarray, cell_size: int = 16) -> np.ndarray:
    """VLFeat uniform LBP of one grayscale image (``vl_lbp_new(VlLbpUniform, false)``).

    Args:
        image: ``(H, W)`` grayscale image.
        cell_size: cell side in pixels.

    Returns:
        ``(58, H // cell_size, W // cell_size)`` float32 features, VLFeat's layout.
    """
    lib = _require()
    image = _gray(image).copy()  # vl_lbp_process takes a non-const pointer
    height, width = image.shape
    handle = lib.vl_lbp_new(_LBP_UNIFORM, 0)
    try:
        dims = (lib.vl_lbp_get_dimension(handle), height // cell_size, width // cell_size)
        if dims[1] == 0 or dims[2] == 0:
            raise ValueError(f"a {height}x{width} image has no {cell_size}-pixel LBP cell")
        # vl_lbp_process accumulates into the buffer, so it must start at zero.
        features = np.zeros(dims, dtype=np.float32)
        lib.vl_lbp_process(handle, _ptr(features), _ptr(image), width, height, cell_size)
    finally:
        lib.vl_lbp_delete(handle)
    return features
