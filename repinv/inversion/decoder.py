"""A trained decoder as an inversion method: a representation and its decoder, loaded from a run directory.

``repinv.load_decoder(RUN)`` (also ``repinv.load``) rebuilds both from the run's metadata alone and refuses
anything that does not match. Where the features follow the image size and the decoder is fully convolutional
(HOG, LBP, SIFT with the ``conv`` decoder), :meth:`DecoderInverter.reconstruct` takes photos of any size and
reconstructs them at that size (:mod:`repinv.inversion.tiles`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repinv.errors import CheckpointError, ShapeError
from repinv.files import load_into
from repinv.inversion.base import InversionMethod
from repinv.inversion.tiles import MARGIN_CELLS, TILE, cell_size, reconstruct_tiled
from repinv.registry.factories import create_representation, decoder_from_config
from repinv.representations.base import FeatureSpec, Representation
from repinv.rundir import RunDir
from repinv.utils import check_shape, resolve_device

__all__ = ["DecoderInverter", "Inverter", "load_decoder", "load"]


class DecoderInverter(InversionMethod, nn.Module):
    """A representation Φ and a decoder f with f(Φ(x)) ≈ x.

    Args:
        representation: the representation the decoder inverts.
        decoder: the decoder.
        image_size: ``(H, W)`` of the images it was trained on.
        metadata: the run's metadata (empty for an inverter built in memory).
        mean_image: the mean training image ``(3, H, W)``, when known.
    """

    def __init__(self, representation: Representation, decoder: nn.Module, image_size: tuple[int, int],
                 metadata: dict[str, Any] | None = None, mean_image: Tensor | None = None) -> None:
        super().__init__()
        self.representation = representation
        self.decoder = decoder
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.metadata = metadata or {}
        self.spec: FeatureSpec = representation.spec(self.image_size)
        self.register_buffer("mean_image", mean_image, persistent=False)

    @property
    def device(self) -> torch.device:
        """Where the decoder's weights are."""
        return next(self.decoder.parameters()).device

    @property
    def own_encoder(self) -> bool:
        """Whether training fine-tuned the representation (``--finetune-encoder``), so only its own features fit."""
        return bool(self.metadata.get("training", {}).get("finetune_encoder"))

    @torch.no_grad()
    def decode(self, features: Tensor) -> Tensor:
        """Reconstruct images from features, upsampled bilinearly to the training image size when the decoder
        predicts a smaller image (the paper's section 4.1).

        Shape:
            features: ``(B, *spec.shape)``; returns ``(B, 3, H, W)`` (not clamped).
        """
        check_shape(features, ("B", *self.spec.shape), "features")
        images: Tensor = self.decoder(features.to(self.device, torch.float32))
        if tuple(images.shape[-2:]) != self.image_size:
            images = F.interpolate(images, size=self.image_size, mode="bilinear", align_corners=False)
        return images

    def any_size(self) -> tuple[int, int]:
        """Pixels per feature cell, when this inverter reconstructs images of any size.

        Raises:
            ShapeError: it cannot: its features do not follow the image size (a network), or its decoder has fully
                connected layers (the message says which).
        """
        cell = cell_size(self.representation, self.image_size)
        if not getattr(self.decoder, "fully_convolutional", False):
            raise ShapeError(f"this run's {getattr(self.decoder, 'name', type(self.decoder).__name__)} decoder is not "
                             "fully convolutional (it has fully connected layers, or is a third party's without "
                             f"forward_any_size): it reconstructs {self.image_size[0]}x{self.image_size[1]} images "
                             "only (use --size training)")
        return cell

    @torch.no_grad()
    def reconstruct(self, images: Tensor, *, tile: int = TILE, margin_cells: int = MARGIN_CELLS) -> Tensor:
        """Reconstruct images at their own size: at the training size as ``decode(features(images))``; at another
        size (where :meth:`any_size` allows) by the fully convolutional decoder, in overlapping tiles of about
        ``tile`` pixels when larger (:func:`repinv.inversion.tiles.reconstruct_tiled`).

        Raises:
            ShapeError: images of another size than the training size, which this inverter cannot take.

        Shape:
            images: ``(B, 3, H, W)`` in [0, 1], any ``H, W``; returns ``(B, 3, H, W)`` (not clamped).
        """
        if tuple(images.shape[-2:]) == self.image_size:
            return super().reconstruct(images)
        cell = self.any_size()
        decode_map = cast(Callable[[Tensor], Tensor], self.decoder.forward_any_size)
        final = getattr(self.decoder, "final_size", self.image_size)
        scale = (self.image_size[0] / final[0], self.image_size[1] / final[1])
        return reconstruct_tiled(images.to(self.device), self.features,
                                 lambda features: decode_map(features.to(torch.float32)),
                                 cell, scale=scale, tile=tile, margin_cells=margin_cells)


#: The name this class had before the inversion methods were named alike (kept for existing code).
Inverter = DecoderInverter


def load_decoder(run: str | Path | RunDir, device: str | torch.device = "auto") -> DecoderInverter:
    """Load a trained decoder and its representation from a run directory (or its ``best/`` subdirectory).

    Args:
        run: the run directory.
        device: where to put it (``"auto"``: CUDA when available).

    Returns:
        The inverter in evaluation mode.

    Raises:
        CheckpointError: missing files, or weights that do not match the architecture the metadata describes.
    """
    folder = RunDir(run).require()
    target = resolve_device(device)
    meta = folder.metadata()
    (rep_meta, image_size), decoder_meta = folder.identity(), meta.get("decoder")
    if not isinstance(decoder_meta, dict) or "config" not in decoder_meta:
        raise CheckpointError(f"the metadata in {folder} lacks the decoder's config")
    representation = create_representation(rep_meta["name"], **rep_meta["options"])
    encoder = folder.read_encoder()
    if encoder is not None:
        load_into(representation, encoder, f"encoder in {folder}")
    spec = representation.spec(image_size)
    saved_shape = tuple(decoder_meta["config"].get("spec", spec.shape))
    if saved_shape != spec.shape:
        raise CheckpointError(f"{rep_meta['name']} now gives features {spec} at {image_size}, but the decoder in "
                              f"{folder} was trained on {'x'.join(map(str, saved_shape))}")
    decoder = decoder_from_config(decoder_meta["config"])
    load_into(decoder, folder.read_decoder(), f"decoder in {folder}")
    # channels-last: up to 1.2x faster decoding on a CPU and never slower (bench/decode.py), CUDA's fast layout
    decoder = decoder.to(memory_format=torch.channels_last)
    return DecoderInverter(representation, decoder, image_size, meta, folder.read_mean_image()).to(target).eval()


#: The name this function had before the loaders were named alike (``repinv.load``).
load = load_decoder
