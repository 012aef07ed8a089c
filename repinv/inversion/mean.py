"""The mean training image as an inversion method: the paper's baseline, the same image whatever the features.

Scored like any other method, it shows how much of a reconstruction's quality owes nothing to the features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from repinv.inversion.base import InversionMethod
from repinv.registry.factories import create_representation
from repinv.representations.base import FeatureSpec, Representation
from repinv.rundir import RunDir
from repinv.utils import check_shape, resolve_device

__all__ = ["MeanImageInverter", "load_mean_image"]


class MeanImageInverter(InversionMethod, nn.Module):
    """Predicts the mean training image for any features.

    Args:
        representation: the representation whose features it is given (for :meth:`features`).
        mean_image: ``(3, H, W)``, the mean of the images a decoder or linear map was trained on.
        metadata: what the run it comes from records.
    """

    mean_image: Tensor  # a buffer: it moves with the module

    def __init__(self, representation: Representation, mean_image: Tensor,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        check_shape(mean_image, (3, "H", "W"), "mean image")
        self.representation = representation
        self.image_size = (int(mean_image.shape[1]), int(mean_image.shape[2]))
        self.spec: FeatureSpec = representation.spec(self.image_size)
        self.metadata = metadata or {}
        self.register_buffer("mean_image", mean_image.float())

    @property
    def device(self) -> torch.device:
        """Where the mean image is."""
        return self.mean_image.device

    def decode(self, features: Tensor) -> Tensor:
        """The mean image, once per sample (a copy: the caller may change it in place).

        Shape:
            features: ``(B, ...)``; returns ``(B, 3, H, W)``.
        """
        return self.mean_image.expand(features.shape[0], *self.mean_image.shape).clone()


def load_mean_image(run: str | Path | RunDir, device: str | torch.device = "auto") -> MeanImageInverter:
    """The mean-image baseline of a decoder's or linear baseline's run directory.

    Raises:
        CheckpointError: the run has no mean image.
    """
    folder = RunDir(run).require()
    (rep_meta, _), mean_image = folder.identity(), folder.require_mean_image()
    representation = create_representation(rep_meta["name"], **rep_meta["options"])
    return MeanImageInverter(representation, mean_image, folder.metadata()).to(resolve_device(device)).eval()
