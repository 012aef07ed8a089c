"""The face every inversion method shows: features of images, images from features.

A trained decoder, the linear map, Mahendran & Vedaldi's optimization and the mean image all implement
:class:`InversionMethod`, so scoring, comparison and ``repinv invert`` treat them alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from repinv.errors import ShapeError
from repinv.representations.base import FeatureSpec, Representation
from repinv.utils import check_finite, check_images

__all__ = ["InversionMethod"]


class InversionMethod(ABC):
    """The face every way of inverting a representation shows (a trained decoder, the linear map, optimization, the
    mean image), so scoring, comparison and ``repinv invert`` treat them alike.

    Subclasses set ``representation``, ``image_size`` and ``spec``, provide ``device``, and implement :meth:`decode`.

    Attributes:
        representation: the representation Φ whose features it inverts.
        image_size: ``(H, W)`` of the images it reconstructs.
        spec: the features it takes.
        metadata: what its run directory records (empty for a method built in memory).
        mean_image: the mean training image ``(3, H, W)``, when known (the mean-image baseline of the same run).
    """

    representation: Representation
    image_size: tuple[int, int]
    spec: FeatureSpec
    metadata: dict[str, Any]
    mean_image: Tensor | None

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where it computes."""

    @property
    def own_encoder(self) -> bool:
        """Whether it decodes the features of its own representation only (a decoder trained with a fine-tuned
        encoder), rather than those of any copy of the representation."""
        return False

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """Φ(images) for images of the inverter's size.

        Shape:
            images: ``(B, 3, H, W)`` in [0, 1]; returns ``(B, *spec.shape)``.
        """
        check_images(images)
        features: Tensor = self.representation(images.to(self.device))
        check_finite(features, f"the {self.representation.name} features of these images")
        return features

    @abstractmethod
    def decode(self, features: Tensor) -> Tensor:
        """Images from features.

        Shape:
            features: ``(B, *spec.shape)``; returns ``(B, 3, H, W)`` (not clamped).
        """

    def any_size(self) -> tuple[int, int]:
        """Pixels per feature cell, for a method that reconstructs images of any size (see
        :meth:`repinv.inversion.decoder.DecoderInverter.any_size`); here, none does.

        Raises:
            ShapeError: always, naming the one size this method reconstructs.
        """
        raise ShapeError(f"{type(self).__name__} reconstructs {self.image_size[0]}x{self.image_size[1]} images only "
                         "(use --size training)")

    def reconstruct(self, images: Tensor) -> Tensor:
        """``decode(features(images))``.

        Shape:
            images: ``(B, 3, H, W)`` in [0, 1] at the inverter's size; returns ``(B, 3, H, W)``.
        """
        return self.decode(self.features(images))

    def warm_up(self, features: Tensor) -> None:
        """Run once on ``features`` so that a timed run does not count first-call costs (allocations, kernels)."""
        self.decode(features)
