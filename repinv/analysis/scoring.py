"""The one scoring loop: several inversion methods on the same test images, on one error scale.

``repinv evaluate`` (a decoder beside the mean image), ``repinv analyze`` (one decoder fed perturbed features) and
``repinv compare`` (decoder, linear map, optimization, mean image) all call :func:`score`; they differ only in the
methods they list. Its rules:

* each batch's features Φ(x) are computed once, by the one representation given, and handed to every method, except
  to a method that decodes only its own encoder's features (a decoder trained with ``--finetune-encoder``);
* an entry may perturb the features first (``NAME[:ARG]``, :mod:`repinv.analysis.perturbations`); image ``i`` of
  the test set gets its own seeded generator, so results do not depend on the batch size;
* every metric comes from :mod:`repinv.analysis.metrics` with one :class:`~repinv.analysis.metrics.ErrorScale` for
  all entries, so their numbers compare directly; feature errors are measured with the one representation, and
  perceptual errors, when a comparator is given, with that comparator for every entry;
* timing (``timed``) counts only the time a method takes to turn features into images, after a warm-up on the first
  batch, with CUDA synchronized, so ratios between methods are fair.
"""

from __future__ import annotations

import time
from collections.abc import Sequence, Sized
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from repinv.analysis.metrics import ErrorScale, MethodScores
from repinv.analysis.perturbations import apply_perturbation
from repinv.inversion.base import InversionMethod
from repinv.losses.perceptual import Comparator
from repinv.pictures import GRID_ROWS
from repinv.progress import progress_bar
from repinv.representations.base import Representation
from repinv.utils import check_finite

__all__ = ["Entry", "Scores", "score"]


@dataclass
class Entry:
    """One row of a scoring: a method, optionally fed perturbed features."""

    label: str  # the row's name in results and grids
    method: InversionMethod  # what turns features into images
    perturbation: str | None = None  # NAME[:ARG] applied to the features before decoding
    feature_error: bool = True  # also measure ‖Φ(x̂) − Φ(x)‖² against the features' pairwise scale


@dataclass
class Scores:
    """What :func:`score` measured."""

    images: int  # test images scored
    metrics: dict[str, dict[str, float]]  # label -> normalized_error, psnr, ssim (and feature_error)
    seconds_per_image: dict[str, float] = field(default_factory=dict)  # label -> decoding time (when timed)
    feature_change: dict[str, float] = field(default_factory=dict)  # perturbed label -> mean ‖Φ′ − Φ‖₂ / ‖Φ‖₂
    shown: dict[str, Tensor] = field(default_factory=dict)  # "images" and each label -> first rows, on the CPU


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def score(loader: DataLoader[Tensor], representation: Representation, entries: Sequence[Entry], *,
          device: torch.device, seed: int = 0, timed: bool = False, show_progress: bool = False,
          description: str = "scoring", comparator: Comparator | None = None) -> Scores:
    """Score every entry on the same test images.

    Args:
        loader: test images, ``(B, 3, H, W)`` in [0, 1] per batch (:func:`repinv.data.sources.evaluation_loader`).
        representation: computes Φ(x) for every entry (but own-encoder methods) and every feature error.
        entries: the rows, with distinct labels.
        device: where the images and features go.
        seed: seeds the perturbations and the error scale's reference sample.
        timed: measure seconds per image for each entry (after a warm-up on the first batch).
        show_progress: show a progress bar.
        description: the progress bar's label.
        comparator: measures every entry's perceptual error too (in its features).

    Returns:
        The metrics of every entry, their timings and feature changes, and the first rows of the first batch.

    Raises:
        ValueError: no image was scored.
    """
    scale = ErrorScale(seed=seed)
    if comparator is not None:
        comparator.to(device)
    sums = {entry.label: MethodScores() for entry in entries}
    seconds = dict.fromkeys(sums, 0.0)
    change = {entry.label: 0.0 for entry in entries if entry.perturbation}
    shown: dict[str, Tensor] = {}
    measure_features = any(entry.feature_error for entry in entries)
    first = 0
    total = len(cast(Sized, loader.dataset))
    with progress_bar(description, total=total, enabled=show_progress) as advance:
        for index, images in enumerate(loader):
            images = images.to(device, non_blocking=True)
            features = representation(images)
            check_finite(features, f"the {representation.name} features of the test images", first_index=first)
            own = {entry.label: entry.method.features(images) for entry in entries if entry.method.own_encoder}
            original = comparator(images) if comparator is not None else None
            scale.add(images, features if measure_features else None, original)
            norms = features.flatten(1).float().norm(dim=1).clamp_min(1e-12) if change else None
            for entry in entries:
                given = own.get(entry.label, features)
                if entry.perturbation:
                    perturbed = apply_perturbation(entry.perturbation, given, seed=seed, first_index=first)
                    moved = (perturbed - given).flatten(1).float().norm(dim=1)
                    change[entry.label] += (moved / norms).double().sum().item()
                    given = perturbed
                if timed and index == 0:
                    entry.method.warm_up(given)
                _synchronize(device)
                start = time.perf_counter()
                reconstructions = entry.method.decode(given)
                _synchronize(device)
                seconds[entry.label] += time.perf_counter() - start
                recomputed = representation(reconstructions.clamp(0, 1)) if entry.feature_error else None
                perceptual = None if original is None or comparator is None else \
                    (original, comparator(reconstructions.clamp(0, 1)))
                sums[entry.label].add(images, reconstructions, features if entry.feature_error else None, recomputed,
                                      perceptual)
                if index == 0:
                    shown[entry.label] = reconstructions[:GRID_ROWS].detach().cpu()
            if index == 0:
                shown["images"] = images[:GRID_ROWS].cpu()
            first += images.shape[0]
            advance(images.shape[0])
    return Scores(first, {label: scale.summarize(method) for label, method in sums.items()},
                  {label: value / first for label, value in seconds.items()} if timed else {},
                  {label: value / first for label, value in change.items()}, shown)
