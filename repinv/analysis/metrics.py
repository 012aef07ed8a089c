"""Reconstruction metrics on one scale for every method.

* normalized reconstruction error (the paper's): mean over test images of ``‖x − x̂‖₂ / N``, where ``N`` is the
  mean Euclidean distance between pairs of test images;
* PSNR and SSIM (Gaussian window 11, σ 1.5, the constants of Wang et al. 2004, mean over RGB channels);
* feature-space error ``‖Φ(x̂) − Φ(x)‖² / mean pairwise ‖Φ(x_i) − Φ(x_j)‖²`` (Mahendran & Vedaldi's scale);
* perceptual error: the same in a chosen comparator network's features Ψ instead of Φ
  (:class:`repinv.losses.Comparator`), named beside every result, since its value depends on the comparator;
* colour error: the normalized error of the images' mean colours (each image reduced to its three per-channel
  means), and layout error: the normalized error of the images reduced to 4x4 block means. Both say what survives
  when the detail is gone (the paper's "colour and rough contours survive up to fc8"): 0 is exact, about 1 is no
  closer than another test photo.

Reconstructions are clamped to [0, 1] before any metric: they are images, and a decoder must not score better by
predicting values no photo has. The pairwise normalizers use every pair of a seeded uniform reservoir of up to
``reference_size`` test images (all of them when the test set is smaller), so memory stays bounded on large sets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from repinv.utils import check_shape

__all__ = ["METRICS", "metric_columns", "psnr", "ssim", "colour_and_layout", "mean_pairwise_distance", "Reservoir",
           "MethodScores", "ErrorScale"]


#: Every metric a result reports, in table order: (key, column label with its better direction, format). Results
#: (evaluate, analyze, compare) and their tables and CSV files all use this one list.
METRICS = (("normalized_error", "normalized error ↓", "{:.4f}"), ("feature_error", "feature error ↓", "{:.4f}"),
           ("perceptual_error", "perceptual ↓", "{:.4f}"),
           ("psnr", "PSNR dB ↑", "{:.2f}"), ("ssim", "SSIM ↑", "{:.4f}"),
           ("colour_error", "colour ↓", "{:.3f}"), ("layout_error", "layout ↓", "{:.3f}"),
           ("feature_change", "‖Φ′−Φ‖/‖Φ‖", "{:.3f}"), ("seconds_per_image", "s / image ↓", "{:.3g}"))


def metric_columns(rows: list[dict[str, float]]) -> list[tuple[str, str, str]]:
    """The entries of :data:`METRICS` that at least one of ``rows`` reports, in table order."""
    return [metric for metric in METRICS if any(metric[0] in row for row in rows)]


def psnr(images: Tensor, reconstructions: Tensor) -> Tensor:
    """Peak signal-to-noise ratio per image, for values in [0, 1].

    Shape:
        images, reconstructions: ``(B, C, H, W)``; returns ``(B,)`` in dB (capped at 100 for identical images).
    """
    check_shape(reconstructions, tuple(images.shape), "reconstructions")
    mse = (images - reconstructions).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).clamp_max(100.0)


def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    kernel = torch.exp(-coords.pow(2) / (2 * sigma**2))
    return kernel / kernel.sum()


def ssim(images: Tensor, reconstructions: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity per image (Wang et al. 2004), data range 1, averaged over channels.

    Matches ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``: statistics over valid windows only (no padding).

    Shape:
        images, reconstructions: ``(B, C, H, W)`` with ``H, W >= window``; returns ``(B,)``.
    """
    check_shape(reconstructions, tuple(images.shape), "reconstructions")
    channels = images.shape[1]
    g = _gaussian_window(window, sigma, images.device, images.dtype)
    kernel_h = g.view(1, 1, window, 1).expand(channels, 1, window, 1)
    kernel_w = g.view(1, 1, 1, window).expand(channels, 1, 1, window)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, kernel_h, groups=channels), kernel_w, groups=channels)

    mu_x, mu_y = blur(images), blur(reconstructions)
    var_x = blur(images * images) - mu_x**2
    var_y = blur(reconstructions * reconstructions) - mu_y**2
    cov = blur(images * reconstructions) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return score.flatten(1).mean(1)


#: Side of the block-mean grid the layout error compares.
LAYOUT_GRID = 4


def colour_and_layout(images: Tensor) -> tuple[Tensor, Tensor]:
    """The coarse summaries the colour and layout errors compare.

    Shape:
        images: ``(B, C, H, W)``; returns ``(B, C)`` per-channel means and ``(B, C, 4, 4)`` block means.
    """
    return images.mean(dim=(-2, -1)), F.adaptive_avg_pool2d(images, LAYOUT_GRID)


def mean_pairwise_distance(samples: Tensor, squared: bool = False, chunk: int = 256) -> float:
    """Mean Euclidean distance (or squared distance) over all pairs ``i < j`` of rows.

    Shape:
        samples: ``(n, ...)`` with ``n >= 2``; flattened per row.
    """
    flat = samples.flatten(1).float()
    n = flat.shape[0]
    if n < 2:
        raise ValueError("the mean pairwise distance needs at least two samples")
    total = 0.0
    for start in range(0, n, chunk):
        block = torch.cdist(flat[start:start + chunk], flat)
        block = block.pow(2) if squared else block
        rows = torch.arange(start, start + block.shape[0], device=block.device).unsqueeze(1)
        upper = torch.arange(n, device=block.device).unsqueeze(0) > rows
        total += block[upper].double().sum().item()
    return total / (n * (n - 1) / 2)


class Reservoir:
    """A seeded uniform sample of at most ``capacity`` items from a stream (Vitter's algorithm R)."""

    def __init__(self, capacity: int, seed: int = 0) -> None:
        self.capacity = capacity
        self.seen = 0
        self.items: list[Tensor] = []
        self._generator = torch.Generator().manual_seed(seed)

    def add(self, batch: Tensor) -> None:
        """Offer each row of ``batch`` (stored on the CPU in float16 to bound memory)."""
        for row in batch.detach().to("cpu", torch.float16):
            if len(self.items) < self.capacity:
                self.items.append(row)
            else:
                slot = int(torch.randint(0, self.seen + 1, (1,), generator=self._generator))
                if slot < self.capacity:
                    self.items[slot] = row
            self.seen += 1

    def stack(self) -> Tensor:
        """The sample as one tensor ``(n, ...)``."""
        return torch.stack(self.items)


@dataclass
class MethodScores:
    """Per-image sums for one reconstruction method."""

    count: int = 0
    distance: float = 0.0  # sum of ‖x − x̂‖₂
    psnr: float = 0.0
    ssim: float = 0.0
    ssim_count: int = 0  # images large enough for SSIM's 11x11 window
    feature_distance: float = 0.0  # sum of ‖Φ(x̂) − Φ(x)‖²
    feature_count: int = 0
    perceptual_distance: float = 0.0  # sum of ‖Ψ(x̂) − Ψ(x)‖² in the comparator's features
    perceptual_count: int = 0
    colour_distance: float = 0.0  # sum of the distances between mean colours
    layout_distance: float = 0.0  # sum of the distances between 4x4 block means

    def add(self, images: Tensor, reconstructions: Tensor, features: Tensor | None = None,
            reconstruction_features: Tensor | None = None,
            perceptual: tuple[Tensor, Tensor] | None = None) -> None:
        """Add a batch; reconstructions are clamped to [0, 1] (see the module note). ``perceptual`` is the
        comparator's features of the images and of the (clamped) reconstructions."""
        reconstructions = reconstructions.clamp(0, 1).to(images.dtype)
        self.count += images.shape[0]
        self.distance += (images - reconstructions).flatten(1).norm(dim=1).double().sum().item()
        self.psnr += psnr(images, reconstructions).double().sum().item()
        for name, original, reconstructed in zip(("colour_distance", "layout_distance"),
                                                 colour_and_layout(images), colour_and_layout(reconstructions)):
            distance = (original - reconstructed).flatten(1).norm(dim=1).double().sum().item()
            setattr(self, name, getattr(self, name) + distance)
        if min(images.shape[-2:]) >= 11:
            self.ssim += ssim(images, reconstructions).double().sum().item()
            self.ssim_count += images.shape[0]
        if features is not None and reconstruction_features is not None:
            diff = (reconstruction_features.float() - features.float()).flatten(1)
            self.feature_distance += diff.pow(2).sum(1).double().sum().item()
            self.feature_count += features.shape[0]
        if perceptual is not None:
            diff = (perceptual[1].float() - perceptual[0].float()).flatten(1)
            self.perceptual_distance += diff.pow(2).sum(1).double().sum().item()
            self.perceptual_count += diff.shape[0]


@dataclass
class ErrorScale:
    """The normalizers shared by every method evaluated on one test set."""

    reference_size: int = 1024  # images kept for the pairwise normalizers
    seed: int = 0  # seeds the reservoir
    _images: Reservoir = field(init=False)
    _features: Reservoir = field(init=False)
    _perceptual: Reservoir = field(init=False)

    def __post_init__(self) -> None:
        self._images = Reservoir(self.reference_size, self.seed)
        self._features = Reservoir(self.reference_size, self.seed)
        self._perceptual = Reservoir(self.reference_size, self.seed)

    def add(self, images: Tensor, features: Tensor | None = None, perceptual: Tensor | None = None) -> None:
        """Offer a batch of test images (and their features, and their comparator's features) to the reference
        sample."""
        self._images.add(images)
        if features is not None:
            self._features.add(features)
        if perceptual is not None:
            self._perceptual.add(perceptual)

    def summarize(self, scores: MethodScores) -> dict[str, float]:
        """Turn a method's sums into the reported metrics."""
        if scores.count == 0:
            raise ValueError("no images were evaluated")
        scales = [math.nan] * 3
        if self._images.seen >= 2:
            reference = self._images.stack().float()
            scales = [mean_pairwise_distance(summary) for summary in (reference, *colour_and_layout(reference))]
        result = {
            "normalized_error": scores.distance / scores.count / scales[0],
            "psnr": scores.psnr / scores.count,
            "ssim": scores.ssim / scores.ssim_count if scores.ssim_count else math.nan,
            "colour_error": scores.colour_distance / scores.count / scales[1],
            "layout_error": scores.layout_distance / scores.count / scales[2],
        }
        if scores.feature_count and self._features.seen >= 2:
            feature_scale = mean_pairwise_distance(self._features.stack(), squared=True)
            result["feature_error"] = scores.feature_distance / scores.feature_count / feature_scale
        if scores.perceptual_count and self._perceptual.seen >= 2:
            perceptual_scale = mean_pairwise_distance(self._perceptual.stack(), squared=True)
            result["perceptual_error"] = scores.perceptual_distance / scores.perceptual_count / perceptual_scale
        return result
