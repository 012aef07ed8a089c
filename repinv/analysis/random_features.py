"""Random feature vectors decoded to images (Dosovitskiy & Brox 2016, section 4.5): what a decoder makes of
features that no image produced.

Two models are fitted to the features of real images (up to 4,096 of them):

* ``histogram``: each dimension independently, from a histogram (32 bins by default) of its non-zero values;
* ``gaussian``: one Gaussian with the mean and standard deviation of all non-zero values pooled over every
  dimension (so shifted away from zero), truncated at zero when the real features are non-negative (after a
  ReLU, HOG, LBP), otherwise untruncated.

Both then match the sparsity of real features *exactly per vector*: a sample of D values gets
``round(sparsity · D)`` zeros (the real share of zero entries, or the one asked for). ``histogram`` picks which
entries are zero with each dimension's own frequency of being zero, ``gaussian`` uniformly (it has no notion of
dimensions). ``alpha`` multiplies the vectors (the paper's contrast factor).
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from repinv.data.sources import ImageDataset
from repinv.errors import InvalidOption
from repinv.files import write_json
from repinv.inversion.decoder import Inverter
from repinv.options import Option
from repinv.pictures import write_image_table
from repinv.progress import progress_bar

__all__ = ["METHODS", "FeatureDistribution", "HistogramDistribution", "GaussianDistribution", "fit_distribution",
           "collect_features", "sample_images"]

METHODS = ("histogram", "gaussian")
#: Real features are held in memory to fit the models; beyond this many bytes fewer images are used.
MEMORY_LIMIT = 2**30


@dataclass
class FeatureDistribution(ABC):
    """A model of real features to draw random ones from.

    Attributes:
        shape: the feature shape of one image.
        sparsity: the share of exactly-zero entries in the real features.
        zero_rate: ``(D,)`` each dimension's share of zeros in the real features.
        images: how many images it was fitted on.
    """

    shape: tuple[int, ...]
    sparsity: float
    zero_rate: Tensor
    images: int

    @abstractmethod
    def _dense(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, D)`` values before the sparsity is imposed."""

    def _zero_weights(self) -> Tensor:
        """Relative chance of each dimension to be one of a sample's zeros."""
        return torch.ones_like(self.zero_rate)

    def sample(self, n: int, *, generator: torch.Generator, sparsity: float | None = None,
               alpha: float = 1.0) -> Tensor:
        """Draw ``n`` random feature vectors.

        Args:
            n: how many.
            generator: a CPU generator, the only source of randomness.
            sparsity: the share of zeros per vector (default: that of the real features). A dimension that was
                never non-zero in the real features stays zero, so a sample can be sparser than asked.
            alpha: multiplies every vector.

        Returns:
            ``(n, *shape)`` float32 on the CPU.
        """
        target = self.sparsity if sparsity is None else sparsity
        if not 0.0 <= target <= 1.0:
            raise InvalidOption(f"sparsity must be in [0, 1], got {target}")
        values = self._dense(n, generator)
        zeros = round(target * values.shape[1])
        weights = self._zero_weights()
        for row in values:
            candidates = row.nonzero().squeeze(1)
            missing = zeros - (row.numel() - candidates.numel())
            if missing > 0:
                chosen = torch.multinomial(weights[candidates], missing, replacement=False, generator=generator)
                row[candidates[chosen]] = 0
        return (alpha * values).view(n, *self.shape)


@dataclass
class HistogramDistribution(FeatureDistribution):
    """Independent per-dimension histograms of the non-zero values.

    Attributes:
        low: ``(D,)`` smallest non-zero value per dimension (0 where there is none).
        width: ``(D,)`` bin width per dimension.
        cdf: ``(D, bins)`` cumulative bin frequencies (all zero where a dimension was never non-zero).
    """

    low: Tensor
    width: Tensor
    cdf: Tensor

    def _dense(self, n: int, generator: torch.Generator) -> Tensor:
        dims, bins = self.cdf.shape
        draws = torch.rand(2, dims, n, generator=generator)
        index = torch.searchsorted(self.cdf, draws[0], right=True).clamp_max(bins - 1)
        values = self.low[:, None] + (index + draws[1]) * self.width[:, None]
        return torch.where(self.cdf[:, -1:] > 0, values, 0.0).T.contiguous()

    def _zero_weights(self) -> Tensor:
        # Dimensions that are often zero in real features are the likely zeros of a sample; the floor keeps a
        # dimension that was never zero eligible when many zeros are asked for.
        return self.zero_rate + 1e-6


@dataclass
class GaussianDistribution(FeatureDistribution):
    """One Gaussian for every dimension, truncated below at zero for non-negative features.

    Attributes:
        mean, std: of the non-zero real values, pooled over all dimensions.
        nonnegative: whether the real features had no negative value (then samples are truncated at 0).
    """

    mean: float
    std: float
    nonnegative: bool

    def _dense(self, n: int, generator: torch.Generator) -> Tensor:
        dims = self.zero_rate.numel()
        std = max(self.std, 1e-12)
        # Inverse-CDF sampling restricted to [lower, 1): an exact truncated Gaussian, no rejection loop.
        lower = float(torch.special.ndtr(torch.tensor(-self.mean / std, dtype=torch.float64))) if self.nonnegative \
            else 0.0
        uniform = lower + (1 - lower) * torch.rand(n, dims, generator=generator, dtype=torch.float64)
        values = self.mean + std * torch.special.ndtri(uniform.clamp(1e-12, 1 - 1e-12))
        values = values.float()
        return values.clamp_min(torch.finfo(torch.float32).tiny) if self.nonnegative else values  # type: ignore[no-any-return]


def fit_distribution(features: Tensor, method: str, bins: int = 32) -> FeatureDistribution:
    """Fit a random-feature model to real features.

    Args:
        features: real features ``(n, *shape)``, ``n >= 1``.
        method: ``"histogram"`` or ``"gaussian"``.
        bins: histogram bins per dimension.

    Returns:
        The fitted model.
    """
    if method not in METHODS:
        raise InvalidOption(f"unknown sampling method {method!r}; use {' or '.join(METHODS)}")
    flat = features.detach().flatten(1).float().cpu()
    nonzero = flat != 0
    zero_rate = 1 - nonzero.float().mean(0)
    common: dict[str, Any] = dict(shape=tuple(features.shape[1:]), sparsity=float(zero_rate.mean()),
                                  zero_rate=zero_rate, images=flat.shape[0])
    if method == "gaussian":
        values = flat[nonzero]
        mean = float(values.mean()) if values.numel() else 0.0
        std = float(values.std()) if values.numel() > 1 else 0.0
        return GaussianDistribution(**common, mean=mean, std=std, nonnegative=bool((flat >= 0).all()))
    low = torch.where(nonzero, flat, math.inf).amin(0)
    high = torch.where(nonzero, flat, -math.inf).amax(0)
    present = nonzero.any(0)
    low, high = torch.where(present, low, 0.0), torch.where(present, high, 0.0)
    width = (high - low) / bins
    index = torch.where(width > 0, (flat - low) / width.clamp_min(1e-30), 0.0).floor().clamp(0, bins - 1).long()
    dims = torch.arange(flat.shape[1]).expand_as(flat)
    counts = torch.zeros(flat.shape[1] * bins).index_add_(0, (dims * bins + index)[nonzero],
                                                          torch.ones(int(nonzero.sum())))
    counts = counts.view(-1, bins)
    cdf = counts.cumsum(1) / counts.sum(1, keepdim=True).clamp_min(1)
    return HistogramDistribution(**common, low=low, width=width, cdf=cdf)


@torch.no_grad()
def collect_features(inverter: Inverter, data: str | Sequence[str], *, limit: int = 4096, batch_size: int = 64,
                     workers: int = 0, seed: int = 0, show_progress: bool = False) -> Tensor:
    """Features of up to ``limit`` images of ``data`` (a seeded random subset when there are more), on the CPU.

    Fewer images are used, with a warning, where ``limit`` of them would take more than 1 GiB.

    Returns:
        ``(n, *spec.shape)`` float32.
    """
    dataset: Any = ImageDataset(data, inverter.image_size, train=False, seed=seed)
    affordable = max(2, MEMORY_LIMIT // (4 * inverter.spec.numel))
    if affordable < limit and affordable < len(dataset):
        warnings.warn(f"fitting on {affordable} images instead of {limit}: {inverter.spec} features of more would "
                      "not fit in 1 GiB", stacklevel=2)
    limit = min(limit, affordable)
    if len(dataset) > limit:
        chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:limit]
        dataset = Subset(dataset, chosen.sort().values.tolist())  # in order: sequential reads of tar shards
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    collected = []
    with progress_bar("collecting features", total=len(dataset), enabled=show_progress) as advance:
        for images in loader:
            collected.append(inverter.features(images).float().cpu())
            advance(images.shape[0])
    return torch.cat(collected)


@torch.no_grad()
def sample_images(inverter: Inverter, data: str | Sequence[str], method: str, n: int = 16, *, alpha: float = 1.0,
                  sparsity: float | None = None, limit: int = 4096, batch_size: int = 64, workers: int = 0,
                  seed: int = 0, show_progress: bool = False,
                  grid: str | Path | None = None) -> tuple[Tensor, dict[str, Any]]:
    """Decode random feature vectors drawn from a model of real features.

    Args:
        inverter: the trained inverter.
        data: images whose features the model is fitted on.
        method: ``"histogram"`` or ``"gaussian"`` (see the module docstring).
        n: how many vectors.
        alpha: multiplies the vectors.
        sparsity: share of zeros per vector (default: that of the real features).
        limit: fit on at most this many images.
        batch_size, workers, show_progress: for computing the real features.
        seed: seeds the choice of images and the samples.
        grid: when given, a PNG of the ``n`` decoded images, 8 per row, and the summary beside it as JSON (same
            name, ``.json``), which ``repinv report`` shows with the PNG.

    Returns:
        The decoded images ``(n, 3, H, W)`` in [0, 1], and a JSON-able summary ``{"method", "n", "alpha",
        "images", "real_sparsity", "sample_sparsity"}`` (``images``: how many real images the model was fitted on).
    """
    n = Option("n", 1, int, "random feature vectors to decode", minimum=1).check(n, "sampling")
    model = fit_distribution(collect_features(inverter, data, limit=limit, batch_size=batch_size, workers=workers,
                                              seed=seed, show_progress=show_progress), method)
    features = model.sample(n, generator=torch.Generator().manual_seed(seed), sparsity=sparsity, alpha=alpha)
    images = torch.cat([inverter.decode(chunk) for chunk in torch.split(features, batch_size)]).clamp(0, 1).cpu()
    summary = {"method": method, "n": n, "alpha": alpha, "images": model.images, "real_sparsity": model.sparsity,
               "sample_sparsity": float((features == 0).float().mean())}
    if grid is not None:
        rows = [images[i:i + 8] for i in range(0, n, 8)]
        if len(rows) > 1 and rows[-1].shape[0] < 8:  # a short last row is padded with white
            rows[-1] = torch.cat([rows[-1], torch.ones(8 - rows[-1].shape[0], *images.shape[1:])])
        write_image_table(list(torch.stack(rows).transpose(0, 1)), grid)
        write_json(Path(grid).with_suffix(".json"), {
            **summary, "data": [data] if isinstance(data, str) else list(data), "seed": seed,
            "representation": inverter.metadata.get("representation"), "grid": Path(grid).name})
    return images, summary
