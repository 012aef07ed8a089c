"""The face every inversion method shows: features of images, images from features.

A trained decoder, the linear map, Mahendran & Vedaldi's optimization and the mean image all implement
:class:`InversionMethod`, so scoring, comparison and ``repinv invert`` treat them alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from repinv.representations.base import FeatureSpec, Representation
from repinv.utils import check_images

__all__ = ["InversionMethod"]


class InversionMethod(ABC):
    """The face every way of inverting a representation shows (a trained decoder, the linear map, optimization), so
    evaluation, comparison and ``repinv invert`` treat them alike.

    Subclasses set ``representation``, ``image_size`` and ``spec``, provide ``device``, and implement :meth:`decode`.
    """

    representation: Representation
    image_size: tuple[int, int]
    spec: FeatureSpec
    device: torch.device

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """Φ(images) for images of the inverter's size.

        Shape:
            images: ``(B, 3, H, W)`` in [0, 1]; returns ``(B, *spec.shape)``.
        """
        check_images(images)
        return self.representation(images.to(self.device))

    @abstractmethod
    def decode(self, features: Tensor) -> Tensor:
        """Images from features.

        Shape:
            features: ``(B, *spec.shape)``; returns ``(B, 3, H, W)`` (not clamped).
        """

    def reconstruct(self, images: Tensor) -> Tensor:
        """``decode(features(images))``.

        Shape:
            images: ``(B, 3, H, W)`` in [0, 1] at the inverter's size; returns ``(B, 3, H, W)``.
        """
        return self.decode(self.features(images))
