"""Where a representation's features come from while a decoder trains (or a cache is written), decided once.

:func:`feature_mode` picks one of four places, and :func:`with_features` turns the data loader's batches into
``(images, features or None)`` pairs on the training device, whatever the place:

* ``"cache"``: read with the images from a feature cache (:mod:`repinv.data.cache`);
* ``"workers"``: a per-image representation (sparse SIFT: serial CPU work) computes them in the data-loader workers,
  after augmentation, so the training loop never waits on it (:func:`per_image_features`);
* ``"step"``: a fine-tuned representation computes them inside the training step, with gradients (``None`` here);
* ``"batched"``: a frozen batched representation (HOG, LBP, network layers) computes them in the training process
  for the next ``group`` batches in one call. At small batches a call's fixed costs rival its work: HOG at 64x64
  costs about a third less per image at 64 images than at 16 (docs/benchmarks.md). The steps see exactly the
  batches they would have seen, and features equal per-batch ones to float rounding.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor

from repinv.representations.base import Representation

__all__ = ["FeatureMode", "feature_mode", "per_image_features", "with_features"]

FeatureMode = Literal["cache", "workers", "step", "batched"]


def feature_mode(representation: Representation, *, cached: bool = False, finetune: bool = False) -> FeatureMode:
    """Where the features of training images are computed (see the module note).

    Args:
        representation: the representation being inverted.
        cached: the images come from a feature cache.
        finetune: the representation trains with the decoder.
    """
    if cached:
        return "cache"
    if finetune:
        return "step"
    return "workers" if representation.per_image else "batched"


@torch.no_grad()
def per_image_features(representation: Representation, image: Tensor) -> Tensor:
    """Features of one image, for data-loader workers.

    Shape:
        image: ``(3, H, W)``; returns the representation's ``(C, h, w)`` or ``(D,)``.
    """
    features: Tensor = representation(image.unsqueeze(0))
    return features[0]


def with_features(batches: Iterable[Tensor | Sequence[Tensor]], representation: Representation, mode: FeatureMode,
                  device: torch.device, group: int = 1) -> Iterator[tuple[Tensor, Tensor | None]]:
    """The loader's batches as ``(images, features or None)`` on ``device``.

    Args:
        batches: images (``"step"``, ``"batched"``) or ``(images, features)`` pairs (``"cache"``, ``"workers"``).
        representation: computes the features in ``"batched"`` mode.
        mode: where the features come from (:func:`feature_mode`).
        device: where the pairs go.
        group: in ``"batched"`` mode, how many batches share one call of the representation.

    Yields:
        ``(images, features)``, features ``None`` in ``"step"`` mode (the step computes them).
    """
    pairs = (_pair(batch, device) for batch in batches)
    if mode != "batched":
        yield from pairs
        return
    while True:
        parts = [images for images, _ in itertools.islice(pairs, group)]
        if not parts:
            return
        with torch.no_grad():
            features = representation(torch.cat(parts))
        yield from zip(parts, features.split([len(part) for part in parts]))


def _pair(batch: Tensor | Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor | None]:
    """A loader's batch, images alone or with features, as a pair on ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True), None
    images, features = batch
    return images.to(device, non_blocking=True), features.to(device, non_blocking=True)
