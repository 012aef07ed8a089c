"""Inverting with any method: load a decoder, linear or optimization inverter by kind, and write its
reconstructions of image files, or of features computed elsewhere, to disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.utils import save_image

from .baselines import load_linear
from .checkpoint import atomic_write, load_tensors, read_metadata
from .data import load_images
from .errors import CheckpointError, InvalidOption
from .inverter import Inversion, load
from .optimize import OptimizationInverter, OptimizeSettings
from .representation import create_representation

__all__ = ["INVERTER_KINDS", "load_inverter", "run_identity", "invert_images", "invert_features", "write_images",
           "unique_names"]

#: The kinds of inverter :func:`load_inverter` makes.
INVERTER_KINDS = ("decoder", "linear", "optimize")


def run_identity(run: str | Path) -> tuple[dict[str, Any], tuple[int, int]]:
    """The representation (``{"name", "options"}``) and image size a decoder or linear run directory records."""
    folder = Path(run)
    path = folder / "decoder.safetensors"
    meta = read_metadata(path if path.is_file() else folder / "linear.safetensors")
    return meta["representation"], (int(meta["image_size"][0]), int(meta["image_size"][1]))


def load_inverter(kind: str, run: str | Path | None = None, *, rep: str | None = None,
                  rep_options: dict[str, Any] | None = None, image_size: int | None = None,
                  settings: OptimizeSettings | None = None, device: str | torch.device = "auto",
                  show_progress: bool = False) -> Inversion:
    """An inverter of one kind, behind the common face (``features``, ``decode``, ``reconstruct``).

    Args:
        kind: ``"decoder"`` (a trained run), ``"linear"`` (a ``fit-linear`` run) or ``"optimize"``
            (Mahendran & Vedaldi's optimization).
        run: the run directory; for ``optimize``, a run whose representation and image size to optimize for.
        rep: for ``optimize`` without a run, the representation's name.
        rep_options: its options.
        image_size: for ``optimize`` with ``rep``, the image side (default 64).
        settings: for ``optimize``, its settings (default: the paper's).
        device: where it runs (``"auto"``: CUDA when available).
        show_progress: for ``optimize``, show a progress bar per batch.

    Returns:
        The inverter.

    Raises:
        InvalidOption: an unknown kind, a missing run, or a representation given to a trained kind.
        CheckpointError: an unreadable run directory.
        NotDifferentiable: ``optimize`` for a representation without gradients.
    """
    if kind not in INVERTER_KINDS:
        raise InvalidOption(f"unknown inverter kind {kind!r}; use one of: {', '.join(INVERTER_KINDS)}")
    if kind != "optimize" and (rep or rep_options or image_size):
        raise InvalidOption(f"method {kind} inverts a trained run: its representation and image size are the run's")
    if kind == "decoder" and run:
        return load(run, device)
    if kind == "linear" and run:
        return load_linear(run, device)
    if kind == "optimize" and (rep or run):
        identity, size = ({"name": rep, "options": dict(rep_options or {})}, (image_size or 64,) * 2) if rep \
            else run_identity(run)
        representation = create_representation(identity["name"], **identity["options"])
        return OptimizationInverter(representation, size, settings, device, show_progress=show_progress)
    raise InvalidOption(f"method {kind} needs a run directory (--checkpoint RUN)"
                        + (" or a representation (--rep REP)" if kind == "optimize" else ""))


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
        atomic_write(path, lambda p, image=image: save_image(image, p, format="PNG"))
        written.append(path)
    return written


def invert_images(inverter: Inversion, paths: Sequence[str | Path], out: str | Path,
                  batch_size: int = 64) -> list[Path]:
    """Reconstruct image files (resized and centre-cropped to the inverter's image size).

    Returns:
        The PNG files written, one per input, named after the input's stem.
    """
    written: list[Path] = []
    names = unique_names([Path(p).stem for p in paths])  # over all batches: a/x.jpg and b/x.jpg never collide
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start:start + batch_size])
        images = load_images(chunk, inverter.image_size)
        written += write_images(inverter.reconstruct(images), names[start:start + batch_size], out)
    return written


def invert_features(inverter: Inversion, path: str | Path, out: str | Path, key: str = "features") -> list[Path]:
    """Decode features stored in a safetensors file under ``key`` (shape ``(B, *feature shape)``).

    Returns:
        The PNG files written: ``features-0.png``, ``features-1.png``, …
    """
    tensors = load_tensors(Path(path))
    if key not in tensors:
        raise CheckpointError(f"{path} has no tensor {key!r} (it has: {', '.join(tensors) or 'none'})")
    features = tensors[key]
    if features.dim() == len(inverter.spec.shape):
        features = features.unsqueeze(0)
    with torch.no_grad():
        images = inverter.decode(features)
    return write_images(images, [f"features-{i}" for i in range(images.shape[0])], out)
