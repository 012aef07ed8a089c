"""Comparing images in a network's features: the ``feature`` loss term (DeePSiM's feature loss) and the comparator
that the perceptual metric of ``evaluate``, ``compare`` and ``analyze`` shares with it.

A comparator is any registered differentiable representation with its options, its weights frozen, e.g.
``timm:tf_efficientnet_lite0:blocks.3`` with ``weights=FILE`` (and ``input_size=64``, so that 64x64 images are not
upsampled to 224 first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from repinv.errors import InvalidOption
from repinv.losses.base import LossTerm
from repinv.registry.factories import create_representation
from repinv.registry.hookspecs import hookimpl

__all__ = ["Comparator", "FeatureLoss", "describe_comparator"]


def describe_comparator(rep: str, options: dict[str, Any]) -> str:
    """A comparator's name with the options that change what it computes, for tables and results
    (``timm:tf_efficientnet_lite0:blocks.5 (input_size=64)``)."""
    shown = {key: value for key, value in options.items() if key not in ("weights", "layout", "tag")}
    return rep + (f" ({', '.join(f'{k}={v}' for k, v in sorted(shown.items()))})" if shown else "")


class Comparator(nn.Module):
    """A frozen differentiable representation that maps images to comparable feature vectors.

    Args:
        rep: a registered representation name (``timm:tf_efficientnet_lite0:blocks.3``).
        **options: its options (``weights``, ``input_size``, ...).

    Attributes:
        name: :func:`describe_comparator` of ``rep`` and ``options``.
        representation: the representation, in evaluation mode, without gradients for its weights.

    Raises:
        InvalidOption: a representation through which gradients do not flow (LBP, SIFT), or bad options.
        UnknownRepresentation, UnknownVariant: an unknown name.
        WeightsUnavailable: its weights cannot be had (the message says what to give instead).

    Shape:
        images ``(B, 3, H, W)`` in [0, 1]; returns ``(B, D)``.
    """

    def __init__(self, rep: str, **options: Any) -> None:
        super().__init__()
        self.representation = create_representation(rep, **options)
        if not self.representation.differentiable:
            raise InvalidOption(f"comparator {rep} is not differentiable; choose a network layer, e.g. "
                                "timm:tf_efficientnet_lite0:blocks.3 with weights=FILE")
        self.representation.load_weights()
        self.representation.requires_grad_(False)
        self.name = describe_comparator(rep, self.representation.config())

    def train(self, mode: bool = True) -> Comparator:
        """Stays in evaluation mode: a comparator's batch statistics and dropout never change."""
        super().train(False)
        return self

    def forward(self, images: Tensor) -> Tensor:
        features: Tensor = self.representation(images.float())
        return features.flatten(1)


class FeatureLoss(LossTerm):
    """``feature``: the mean squared difference between a comparator's features of the reconstructions and of the
    images (Dosovitskiy & Brox 2016, DeePSiM's feature loss). The images' features take no gradient.

    Args:
        rep: the comparator's representation name.
        **options: its options.

    Shape:
        reconstructions, images: ``(B, 3, H, W)``; returns a scalar.
    """

    def __init__(self, rep: str, **options: Any) -> None:
        super().__init__()
        self.comparator = Comparator(rep, **options)

    def forward(self, reconstructions: Tensor, images: Tensor, features: Tensor) -> Tensor:
        target = self.comparator(images).detach()
        return F.mse_loss(self.comparator(reconstructions), target)


def _feature_loss(rep: str | None = None, **options: Any) -> FeatureLoss:
    if not rep:
        raise InvalidOption("loss term feature needs a comparator: --loss-opt feature.rep=NAME (a differentiable "
                            "representation, e.g. timm:tf_efficientnet_lite0:blocks.3) and its options as "
                            "--loss-opt feature.KEY=VALUE (weights=FILE, input_size=64)")
    return FeatureLoss(str(rep), **options)


@hookimpl
def register_losses(register: Callable[..., None]) -> None:
    """``feature``, the distance in a comparator network's features."""
    register("feature", _feature_loss, description="squared distance in a frozen network's features (DeePSiM); "
                                                   "options: rep=NAME and its options")
