"""Inverting with any method: load a decoder, linear or optimization inverter by kind, and write its
reconstructions of image files, or of features computed elsewhere, to disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from repinv.errors import InvalidOption
from repinv.files import read_metadata
from repinv.inversion.base import InversionMethod
from repinv.inversion.decoder import load
from repinv.inversion.linear import load_linear
from repinv.inversion.optimization import OptimizationInverter, OptimizeSettings
from repinv.registry.factories import create_representation

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
                  show_progress: bool = False) -> InversionMethod:
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








