"""The paper's loss term: the mean squared error between reconstructions and images (``mse``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from repinv.losses.base import LossTerm
from repinv.options import validate_options
from repinv.registry.hookspecs import hookimpl

__all__ = ["PixelMSE"]


class PixelMSE(LossTerm):
    """Mean squared error over pixels and channels, in float32 whatever precision the decoder ran in.

    Shape:
        reconstructions, images: ``(B, 3, H, W)``; returns a scalar.
    """

    def forward(self, reconstructions: Tensor, images: Tensor, features: Tensor) -> Tensor:
        return F.mse_loss(reconstructions.float(), images)


def _pixel_mse(**options: Any) -> PixelMSE:
    validate_options("mse loss", options, ())
    return PixelMSE()


@hookimpl
def register_losses(register: Callable[..., None]) -> None:
    """``mse``, the paper's loss."""
    register("mse", _pixel_mse, description="mean squared error in pixels (the paper's loss)")
