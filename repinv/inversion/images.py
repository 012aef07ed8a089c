"""Reconstructing image files, or features stored in a file, with any inversion method, into PNG files."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import save_image

from repinv.data.sources import load_image, load_images
from repinv.errors import CheckpointError, InvalidOption, ShapeError
from repinv.files import atomic_write, load_tensors
from repinv.inversion.base import InversionMethod
from repinv.utils import check_finite, check_shape

__all__ = ["SIZES", "unique_names", "write_images", "native_size", "invert_images", "invert_features"]

#: How ``repinv invert`` sizes its reconstructions (see :func:`invert_images`).
SIZES = ("auto", "native", "training")


def _save_png(image: Tensor, path: Path) -> None:
    save_image(image, path, format="PNG")


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with repeats made unique by a ``-N`` suffix (``x``, ``x-2``, ``x-3``, …), in order."""
    used: set[str] = set()
    unique = []
    for name in names:
        stem, n = name, 1
        while stem in used:
            n += 1
            stem = f"{name}-{n}"
        used.add(stem)
        unique.append(stem)
    return unique


def write_images(images: Tensor, names: Sequence[str], out: str | Path) -> list[Path]:
    """Write a batch as PNG files ``out/NAME.png`` (clamped to [0, 1]); names that repeat get a ``-N`` suffix.

    Shape:
        images: ``(B, 3, H, W)``.
    """
    out = Path(out)
    written: list[Path] = []
    for image, name in zip(images.detach().float().clamp(0, 1).cpu(), unique_names(names)):
        path = out / f"{name}.png"
        atomic_write(path, functools.partial(_save_png, image))
        written.append(path)
    return written


def native_size(inverter: InversionMethod, size: str) -> bool:
    """Whether ``size`` (``auto``, ``native`` or ``training``) means reconstructing photos at their own size.

    Raises:
        ShapeError: ``native`` for an inverter that cannot (the message says why).
        InvalidOption: another value.
    """
    if size not in SIZES:
        raise InvalidOption(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if size == "training":
        return False
    try:
        inverter.any_size()
    except ShapeError:
        if size == "native":
            raise
        return False
    return True


def invert_images(inverter: InversionMethod, paths: Sequence[str | Path], out: str | Path,
                  batch_size: int = 64, size: str = "training") -> list[Path]:
    """Reconstruct image files.

    Args:
        inverter: the inversion method.
        paths: image files.
        out: the folder for the PNG files.
        batch_size: images per batch at the training size.
        size: ``training`` resizes and centre-crops every photo to the inverter's image size; ``native``
            reconstructs each at its own size (a decoder inverter whose features follow the image size, see
            :meth:`~repinv.inversion.decoder.DecoderInverter.reconstruct`); ``auto`` is native where possible.

    Returns:
        The PNG files written, one per input, named after the input's stem.

    Raises:
        ShapeError: ``native`` for an inverter that cannot reconstruct other sizes.
    """
    written: list[Path] = []
    names = unique_names([Path(p).stem for p in paths])  # over all batches: a/x.jpg and b/x.jpg never collide
    if native_size(inverter, size):
        for path, name in zip(paths, names):
            written += write_images(inverter.reconstruct(load_image(path).unsqueeze(0)), [name], out)
        return written
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start:start + batch_size])
        images = load_images(chunk, inverter.image_size)
        written += write_images(inverter.reconstruct(images), names[start:start + batch_size], out)
    return written


def invert_features(inverter: InversionMethod, path: str | Path, out: str | Path, key: str = "features") -> list[Path]:
    """Decode features stored in a safetensors file under ``key`` (shape ``(B, *feature shape)``).

    Returns:
        The PNG files written: ``features-0.png``, ``features-1.png``, …

    Raises:
        CheckpointError: the file is unreadable or lacks ``key``.
        ShapeError: features of another shape than the inverter takes, or not floating point.
        DataError: NaN or infinite values (nothing is written then).
    """
    tensors = load_tensors(Path(path))
    if key not in tensors:
        raise CheckpointError(f"{path} has no tensor {key!r} (it has: {', '.join(tensors) or 'none'})")
    features = tensors[key]
    if not features.is_floating_point():
        raise ShapeError(f"the features in {path} must be floating point, got {features.dtype}")
    if features.dim() == len(inverter.spec.shape):
        features = features.unsqueeze(0)
    check_shape(features, ("B", *inverter.spec.shape), f"the features in {path}")
    check_finite(features, f"the features in {path}")
    with torch.no_grad():
        images = inverter.decode(features)
    return write_images(images, [f"features-{i}" for i in range(images.shape[0])], out)
