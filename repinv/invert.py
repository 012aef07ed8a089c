"""Writing reconstructions to disk: from image files, or from features computed elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image

from .checkpoint import atomic_write, load_tensors
from .data import load_images
from .errors import CheckpointError
from .inverter import Inverter

__all__ = ["invert_images", "invert_features", "write_images", "write_comparison_grid"]


def write_comparison_grid(images: Tensor, reconstructions: Tensor, path: str | Path, pairs_per_row: int = 4) -> Path:
    """Write a PNG grid of (original | reconstruction) pairs.

    Shape:
        images, reconstructions: ``(B, 3, H, W)``; reconstructions are clamped to [0, 1].
    """
    pairs = torch.stack([images.float().cpu(), reconstructions.detach().float().clamp(0, 1).cpu()], dim=1)
    grid = make_grid(pairs.flatten(0, 1), nrow=2 * pairs_per_row, padding=2, pad_value=1.0)
    atomic_write(Path(path), lambda p: save_image(grid, p, format="PNG"))
    return Path(path)


def write_images(images: Tensor, names: Sequence[str], out: str | Path) -> list[Path]:
    """Write a batch as PNG files ``out/NAME.png`` (clamped to [0, 1]); names that repeat get a ``-N`` suffix.

    Shape:
        images: ``(B, 3, H, W)``.
    """
    out = Path(out)
    written: list[Path] = []
    used: set[str] = set()
    for image, name in zip(images.detach().float().clamp(0, 1).cpu(), names):
        stem, n = name, 1
        while stem in used:
            n += 1
            stem = f"{name}-{n}"
        used.add(stem)
        path = out / f"{stem}.png"
        atomic_write(path, lambda p, image=image: save_image(image, p, format="PNG"))
        written.append(path)
    return written


def invert_images(inverter: Inverter, paths: Sequence[str | Path], out: str | Path,
                  batch_size: int = 64) -> list[Path]:
    """Reconstruct image files (resized and centre-cropped to the inverter's image size).

    Returns:
        The PNG files written, one per input, named after the input's stem.
    """
    written: list[Path] = []
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start:start + batch_size])
        images = load_images(chunk, inverter.image_size)
        written += write_images(inverter.reconstruct(images), [Path(p).stem for p in chunk], out)
    return written


def invert_features(inverter: Inverter, path: str | Path, out: str | Path, key: str = "features") -> list[Path]:
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
