"""Evaluation of a trained inverter on a test set, beside the mean-image baseline (through the one scoring loop)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from repinv.analysis.scoring import Entry, score
from repinv.data.sources import DataWarning, DecodeWarning, evaluation_loader, find_image_dataset, skip_summary
from repinv.inversion.base import InversionMethod
from repinv.inversion.mean import MeanImageInverter
from repinv.pictures import write_pairs_grid

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(inverter: InversionMethod, data: str | Sequence[str] | Dataset[Tensor], *, batch_size: int = 64,
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
        ``{"images": n, "skipped": k, "decoder": {metric: value}, "mean_image": {metric: value}}`` with the
        metrics ``normalized_error``, ``psnr``, ``ssim`` and (decoder only) ``feature_error``; ``mean_image`` is
        omitted when the run has no mean image. ``skipped`` counts the images of the data set that failed to decode
        (each replaced by the next readable one, so ``n`` still counts its place); when it is not 0, one
        :class:`~repinv.data.DataWarning` line (:func:`~repinv.data.sources.skip_summary`) says which and why.

    Raises:
        InvalidOption: ``limit`` below 2.
        DataError: fewer than 2 readable test images.
    """
    loader = evaluation_loader(data, inverter.image_size, limit=limit, batch_size=batch_size, workers=workers,
                               pin_memory=inverter.device.type == "cuda")
    entries = [Entry("decoder", inverter)]
    if inverter.mean_image is not None:
        entries.append(Entry("mean_image", MeanImageInverter(inverter.representation, inverter.mean_image),
                             feature_error=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DecodeWarning)  # one line per image: totalled below instead
        scores = score(loader, inverter.representation, entries, device=inverter.device,
                       seed=seed, show_progress=show_progress, description="evaluating")
    summary = skip_summary(loader.dataset, "evaluation")
    if summary is not None:
        warnings.warn(summary, DataWarning, stacklevel=2)
    images = find_image_dataset(loader.dataset)
    skipped = 0 if images is None else sum(len(names) for names in images.decode_failures().values())
    if grid is not None:
        write_pairs_grid(scores.shown["images"], scores.shown["decoder"], grid)
    return {"images": scores.images, "skipped": skipped, **scores.metrics}
