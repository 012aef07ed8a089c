"""Evaluation of a trained inverter on a test set, beside the mean-image baseline (through the one scoring loop)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from repinv.analysis.metrics import mean_pairwise_distance, psnr
from repinv.analysis.scoring import Entry, score
from repinv.data.sources import (
    DataWarning,
    DecodeWarning,
    ImageDataset,
    evaluation_loader,
    find_image_dataset,
    skip_summary,
)
from repinv.errors import DataError
from repinv.inversion.base import InversionMethod
from repinv.inversion.mean import MeanImageInverter
from repinv.losses.perceptual import Comparator
from repinv.pictures import write_pairs_grid
from repinv.progress import progress_bar

__all__ = ["evaluate", "full_size_scores"]


def _rms(difference: Tensor) -> float:
    return float(difference.double().pow(2).mean().sqrt())


@torch.no_grad()
def full_size_scores(inverter: InversionMethod, data: str | Sequence[str], *, limit: int | None = None,
                     show_progress: bool = False) -> dict[str, Any]:
    """Score an inverter on test photos at their own sizes (see :meth:`InversionMethod.any_size`).

    The error does not depend on image size: the mean over photos of the per-pixel RMS error, divided by the mean
    per-pixel RMS distance between pairs of the photos, each reduced to the training size for that (photos of
    different sizes have no pixel-wise distance). At the training size it equals the paper's normalized error.

    Args:
        inverter: a method that reconstructs any size.
        data: test sources.
        limit: at most this many photos (the first ones).
        show_progress: show a progress bar.

    Returns:
        ``{"images": n, "skipped": k, "decoder": {"normalized_error", "psnr"}, "mean_image": {...}}``; the mean
        image (when the run has one) is enlarged to each photo's size.

    Raises:
        ShapeError: the inverter reconstructs its training size only.
        DataError: fewer than 2 readable photos.
    """
    inverter.any_size()
    photos = ImageDataset(data, inverter.image_size, train=False)
    count = len(photos) if limit is None else min(limit, len(photos))
    errors: dict[str, list[float]] = {"decoder": [], "mean_image": []}
    peaks: dict[str, list[float]] = {"decoder": [], "mean_image": []}
    reduced, skipped = [], 0
    with progress_bar("evaluating at full size", total=count, enabled=show_progress) as advance:
        for index in range(count):
            try:
                photo = photos.original(index)[None].to(inverter.device)
            except DataError:
                skipped += 1
                continue
            guesses = {"decoder": inverter.reconstruct(photo).clamp(0, 1)}
            if inverter.mean_image is not None:
                guesses["mean_image"] = F.interpolate(inverter.mean_image[None].to(photo.device), size=photo.shape[-2:],
                                                      mode="bilinear", align_corners=False)
            for name, guess in guesses.items():
                errors[name].append(_rms(photo - guess))
                peaks[name].append(float(psnr(photo, guess.to(photo.dtype))[0]))
            reduced.append(F.interpolate(photo, size=inverter.image_size, mode="area").cpu())
            advance(1)
    if len(reduced) < 2:
        raise DataError(f"full-size evaluation needs at least 2 readable photos, found {len(reduced)}")
    pixels = reduced[0][0].numel()
    scale = mean_pairwise_distance(torch.cat(reduced)) / math.sqrt(pixels)
    result: dict[str, Any] = {"images": len(reduced), "skipped": skipped}
    for name in errors:
        if errors[name]:
            result[name] = {"normalized_error": sum(errors[name]) / len(errors[name]) / scale,
                            "psnr": sum(peaks[name]) / len(peaks[name])}
    return result


@torch.no_grad()
def evaluate(inverter: InversionMethod, data: str | Sequence[str] | Dataset[Tensor], *, batch_size: int = 64,
             limit: int | None = None, workers: int = 0, show_progress: bool = False, seed: int = 0,
             grid: str | Path | None = None, comparator: Comparator | None = None) -> dict[str, Any]:
    """Score an inverter on test images (resized and centre-cropped to its image size; for the photos at their own
    sizes, see :func:`full_size_scores`).

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
        comparator: also measure the perceptual error in this comparator's features (:class:`repinv.losses.Comparator`);
            the result then names it under ``"comparator"``.

    Returns:
        ``{"images": n, "skipped": k, "decoder": {metric: value}, "mean_image": {metric: value}}`` with the
        metrics ``normalized_error``, ``psnr``, ``ssim``, (decoder only) ``feature_error`` and, with a comparator,
        ``perceptual_error`` (and ``"comparator"``: its name); ``mean_image`` is
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
                       seed=seed, show_progress=show_progress, description="evaluating", comparator=comparator)
    summary = skip_summary(loader.dataset, "evaluation")
    if summary is not None:
        warnings.warn(summary, DataWarning, stacklevel=2)
    images = find_image_dataset(loader.dataset)
    skipped = 0 if images is None else sum(len(names) for names in images.decode_failures().values())
    if grid is not None:
        write_pairs_grid(scores.shown["images"], scores.shown["decoder"], grid)
    named = {"comparator": comparator.name} if comparator is not None else {}
    return {"images": scores.images, "skipped": skipped, **named, **scores.metrics}
