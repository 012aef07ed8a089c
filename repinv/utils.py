"""Small helpers every stage uses: the installed version, device resolution, shape checks, seeded generators.

Nothing here knows about representations, data or runs; modules anywhere in repinv may import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata

import numpy as np
import torch
from torch import Tensor

from repinv.errors import DataError, RepinvError, ShapeError

__all__ = ["VERSION", "resolve_device", "check_shape", "check_images", "check_finite", "keyed_generator"]


def _installed_version() -> str:
    try:
        return metadata.version("repinv")
    except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


#: The installed distribution's version (pyproject.toml is its one source), recorded in every run and cache.
VERSION = _installed_version()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as given (validated)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise RepinvError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RepinvError(f"device {device!r} asked for, but no CUDA GPU is available; use --device cpu")
    return resolved


def fast_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions faster than float32: any GPU, and CPUs with bfloat16
    instructions (AVX512-BF16 or AMX, read from Linux's ``/proc/cpuinfo``; elsewhere assumed absent), where
    oneDNN's bfloat16 kernels are native rather than emulated."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_shape(tensor: Tensor, pattern: Sequence[int | str], what: str = "tensor") -> dict[str, int]:
    """Check a tensor's shape against a pattern and bind its named dimensions.

    Args:
        tensor: the tensor to check.
        pattern: one entry per dimension: an ``int`` must match exactly, a ``str`` names a free dimension
            (the same name twice must have the same size); ``"*"`` matches any size without binding.
        what: how the tensor is named in the error message.

    Returns:
        The sizes bound to the named dimensions.

    Raises:
        ShapeError: when the number of dimensions or a fixed size differs.
    """
    shape = tuple(tensor.shape)
    expected = "(" + ", ".join(str(p) for p in pattern) + ")"
    if len(shape) != len(pattern):
        raise ShapeError(f"{what} must have shape {expected}, got {shape}")
    bound: dict[str, int] = {}
    for size, want in zip(shape, pattern):
        if isinstance(want, int):
            if size != want:
                raise ShapeError(f"{what} must have shape {expected}, got {shape}")
        elif want != "*" and bound.setdefault(want, size) != size:
            raise ShapeError(f"{what} must have shape {expected}, got {shape}")
    return bound


def check_images(images: Tensor) -> tuple[int, int]:
    """Check that ``images`` is a batch of RGB float images ``(B, 3, H, W)``; return ``(H, W)``."""
    dims = check_shape(images, ("B", 3, "H", "W"), what="images")
    if not images.is_floating_point():
        raise ShapeError(f"images must be floating point in [0, 1], got {images.dtype}")
    return dims["H"], dims["W"]


def keyed_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator for one item, e.g. ``(seed, epoch, index)``: statistically independent of every other key's,
    whatever order items are drawn in (by workers, batches or ranks)."""
    entropy = np.random.SeedSequence([seed % 2**64, *keys]).generate_state(2)
    return torch.Generator().manual_seed(int(entropy[0]) << 32 | int(entropy[1]))


def check_finite(values: Tensor, what: str, first_index: int = 0) -> None:
    """Refuse NaN or infinite values, naming how many items hold them and which.

    Args:
        values: a batch, ``(B, ...)``; each row is one item (an image's features).
        what: how to name the batch in the message (``"the features in f.safetensors"``).
        first_index: the index of the batch's first item in the whole set, so the message names items by it.

    Raises:
        DataError: an item holds NaN or an infinite value.
    """
    bad = ~torch.isfinite(values.detach().flatten(1)).all(1)
    if bool(bad.any()):
        items = [first_index + int(i) for i in bad.nonzero().flatten()]
        shown = ", ".join(map(str, items[:8])) + (", …" if len(items) > 8 else "")
        raise DataError(f"{what} hold NaN or infinite values in {len(items)} of {values.shape[0]} items (item "
                        f"{shown}); a decoder cannot invert them: fix or leave out those items")
