"""Evaluation of a trained inverter on a test set, beside the mean-image baseline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from repinv.analysis.metrics import ErrorScale, MethodScores
from repinv.data.sources import evaluation_loader
from repinv.inversion.decoder import Inverter
from repinv.pictures import GRID_ROWS, write_pairs_grid
from repinv.progress import progress_bar

__all__ = ["evaluate"]



@torch.no_grad()
def evaluate(inverter: Inverter, data: str | Sequence[str] | Dataset, *, batch_size: int = 64,
             limit: int | None = None, workers: int = 0, show_progress: bool = False, seed: int = 0,
             grid: str | Path | None = None) -> dict[str, Any]:
    """Score an inverter on test images (resized and centre-cropped to its image size).

    Args:
        inverter: the trained inverter (see :func:`repinv.load`).
        data: test sources (folders, tar globs, ``builtin:test``), or a dataset of them (see
            :func:`repinv.data.evaluation_loader`).
        batch_size: images per batch.
        limit: evaluate at most this many images (the first ones, in the data set's order).
        workers: data-loader worker processes.
        show_progress: show a progress bar.
        seed: seeds the reference sample of the pairwise normalizers.
        grid: when given, a PNG of the first 8 test images beside their reconstructions is written there.

    Returns:
        ``{"images": n, "decoder": {metric: value}, "mean_image": {metric: value}}`` with the metrics
        ``normalized_error``, ``psnr``, ``ssim`` and (decoder only) ``feature_error``; ``mean_image`` is omitted
        when the run has no mean image.

    Raises:
        InvalidOption: ``limit`` below 2.
        DataError: fewer than 2 readable test images.
    """
    loader = evaluation_loader(data, inverter.image_size, limit=limit, batch_size=batch_size, workers=workers,
                               pin_memory=inverter.device.type == "cuda")
    dataset = loader.dataset
    scale, decoder, mean = ErrorScale(seed=seed), MethodScores(), MethodScores()
    shown: tuple[Tensor, Tensor] | tuple[()] = ()
    with progress_bar("evaluating", total=len(dataset), enabled=show_progress) as advance:
        for images in loader:
            images = images.to(inverter.device, non_blocking=True)
            features = inverter.features(images)
            reconstructions = inverter.decode(features)
            scale.add(images, features)
            decoder.add(images, reconstructions, features, inverter.features(reconstructions.clamp(0, 1)))
            if inverter.mean_image is not None:
                mean.add(images, inverter.mean_image.expand_as(images))
            if grid is not None and not shown:
                shown = (images[:GRID_ROWS], reconstructions[:GRID_ROWS])
            advance(images.shape[0])
    if shown:
        write_pairs_grid(*shown, grid)
    result: dict[str, Any] = {"images": len(dataset), "decoder": scale.summarize(decoder)}
    if inverter.mean_image is not None:
        result["mean_image"] = scale.summarize(mean)
    return result
