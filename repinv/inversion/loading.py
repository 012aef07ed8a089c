"""Loading any inversion method by kind: ``load_inverter("decoder" | "linear" | "optimize" | "mean", RUN)``.

The family: :func:`~repinv.inversion.decoder.load_decoder`, :func:`~repinv.inversion.linear.load_linear` and
:func:`~repinv.inversion.mean.load_mean_image` read a run directory; :func:`load_inverter` picks one of them by kind,
or builds Mahendran & Vedaldi's optimization for a run's (or a named) representation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from repinv.errors import InvalidOption
from repinv.inversion.base import InversionMethod
from repinv.inversion.decoder import load_decoder
from repinv.inversion.linear import load_linear
from repinv.inversion.mean import load_mean_image
from repinv.inversion.optimization import OptimizationInverter, OptimizeSettings
from repinv.registry.factories import create_representation
from repinv.rundir import RunDir

__all__ = ["INVERTER_KINDS", "load_inverter"]

#: The kinds of inverter :func:`load_inverter` makes.
INVERTER_KINDS = ("decoder", "linear", "optimize", "mean")


def load_inverter(kind: str, run: str | Path | None = None, *, rep: str | None = None,
                  rep_options: dict[str, Any] | None = None, image_size: int | None = None,
                  settings: OptimizeSettings | None = None, device: str | torch.device = "auto",
                  show_progress: bool = False) -> InversionMethod:
    """An inverter of one kind, behind the common face (``features``, ``decode``, ``reconstruct``).

    Args:
        kind: ``"decoder"`` (a trained run), ``"linear"`` (a ``fit-linear`` run), ``"mean"`` (the mean training
            image of either) or ``"optimize"`` (Mahendran & Vedaldi's optimization).
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
        return load_decoder(run, device)
    if kind == "linear" and run:
        return load_linear(run, device)
    if kind == "mean" and run:
        return load_mean_image(run, device)
    if kind == "optimize" and rep:
        return OptimizationInverter(create_representation(rep, **(rep_options or {})), image_size or 64, settings,
                                    device, show_progress=show_progress)
    if kind == "optimize" and run:
        identity, size = RunDir(run).identity()
        return OptimizationInverter(create_representation(identity["name"], **identity["options"]), size, settings,
                                    device, show_progress=show_progress)
    raise InvalidOption(f"method {kind} needs a run directory (--checkpoint RUN)"
                        + (" or a representation (--rep REP)" if kind == "optimize" else ""))








