"""Baselines for a decoder: a linear (ridge) map from features to pixels, and the mean training image.

**Linear.** ``x̂ = W·z + b`` with ``z`` the flattened features, fitted on training images by ridge regression in
closed form: ``W = (Zᶜᵀ Zᶜ + λ I)⁻¹ Zᶜᵀ Xᶜ`` on centred features and pixels, ``b`` the mean image minus ``W``
times the mean features. The data are streamed: only ``ZᵀZ`` (D×D), ``ZᵀX`` (D×3HW), the sums and the counts are
accumulated (float64), so memory does not grow with the number of images.

* **Choosing λ** (``ridge="auto"``, the default): every 10th image is held out while accumulating; λ is picked on
  a log grid ``λ = r · tr(ZᶜᵀZᶜ)/D``, ``r ∈ {1e-6, 1e-5.5, …, 1e2}``, as the value with the smallest held-out
  pixel error (computed exactly from the held-out statistics, through one eigendecomposition), and the model is
  then refitted on all images. With fewer than 20 images there is nothing to hold out: ``r = 1e-3``.
  A number gives ``r`` directly (λ relative to the mean eigenvalue, so it does not depend on the feature scale).
* **Large features** (D > 20,000, e.g. a CNN's convolutional maps): the features are first hashed to
  ``projection`` dimensions (default 4,096) with a seeded count sketch — feature ``i`` is added with a random
  sign to bucket ``h(i)`` (Weinberger et al., "Feature hashing for large scale multitask learning", ICML 2009),
  a random projection that preserves inner products in expectation and costs two integer vectors to store
  instead of a D×k matrix. The ridge map is then fitted on the hashed features.

The run directory (:mod:`repinv.rundir`) holds the map (weight ``(D', 3HW)``, bias, the hash when used; its
metadata: representation, image size, λ and how it was chosen, the data) and the mean training image (the other
baseline). :func:`load_linear` reads it back as a
:class:`LinearInverter`, an :class:`~repinv.inversion.base.InversionMethod` (``features``, ``decode``,
``reconstruct``), so evaluation and comparison treat it like a decoder.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from repinv.data.sources import ImageDataset
from repinv.errors import CheckpointError, DataError, InvalidOption
from repinv.inversion.base import InversionMethod
from repinv.progress import progress_bar
from repinv.registry.factories import create_representation
from repinv.representations.base import FeatureSpec, Representation
from repinv.rundir import RunDir
from repinv.utils import VERSION, check_shape, resolve_device

__all__ = ["LinearInverter", "fit_linear", "load_linear", "RidgeStatistics", "solve_ridge", "HOLDOUT_EVERY",
           "RIDGE_GRID", "MAX_DIRECT_FEATURES"]

HOLDOUT_EVERY = 10  # every 10th training image is held out to choose λ
RIDGE_GRID = tuple(10.0 ** (e / 2) for e in range(-12, 5))  # r = 1e-6 … 1e2, half-decade steps
FALLBACK_RIDGE = 1e-3  # r when there are too few images to hold any out
MIN_IMAGES_FOR_HOLDOUT = 20
MAX_DIRECT_FEATURES = 20_000  # above this many feature values, hash them first
DEFAULT_PROJECTION = 4096


class RidgeStatistics:
    """Streamed sufficient statistics of a least-squares problem ``Y ≈ Z W + b``: ``ZᵀZ``, ``ZᵀY``, ``Σz``,
    ``Σy``, ``Σ‖y‖²`` and the count, in float64.

    Args:
        inputs: the dimension D of ``z``.
        outputs: the dimension P of ``y``.
        device: where to accumulate.
    """

    def __init__(self, inputs: int, outputs: int, device: torch.device | str = "cpu") -> None:
        zeros = functools.partial(torch.zeros, dtype=torch.float64, device=device)
        self.zz, self.zy = zeros(inputs, inputs), zeros(inputs, outputs)
        self.z_sum, self.y_sum = zeros(inputs), zeros(outputs)
        self.y_energy, self.count = 0.0, 0

    def add(self, z: Tensor, y: Tensor) -> None:
        """Add rows.

        Shape:
            z: ``(n, D)``; y: ``(n, P)``.
        """
        z, y = z.to(self.zz), y.to(self.zz)
        self.zz.addmm_(z.T, z)
        self.zy.addmm_(z.T, y)
        self.z_sum += z.sum(0)
        self.y_sum += y.sum(0)
        self.y_energy += y.square().sum().item()
        self.count += z.shape[0]

    def merged(self, other: RidgeStatistics) -> RidgeStatistics:
        """The statistics of both sets of rows."""
        both = RidgeStatistics(0, 0)
        both.zz, both.zy = self.zz + other.zz, self.zy + other.zy
        both.z_sum, both.y_sum = self.z_sum + other.z_sum, self.y_sum + other.y_sum
        both.y_energy, both.count = self.y_energy + other.y_energy, self.count + other.count
        return both

    def centred(self, z_mean: Tensor, y_mean: Tensor) -> tuple[Tensor, Tensor, float]:
        """``Σ(z−z̄)(z−z̄)ᵀ``, ``Σ(z−z̄)(y−ȳ)ᵀ`` and ``Σ‖y−ȳ‖²`` about the given means (not necessarily these rows')."""
        n = self.count
        zz = self.zz - torch.outer(self.z_sum, z_mean) - torch.outer(z_mean, self.z_sum) + n * torch.outer(z_mean,
                                                                                                            z_mean)
        zy = self.zy - torch.outer(self.z_sum, y_mean) - torch.outer(z_mean, self.y_sum) + n * torch.outer(z_mean,
                                                                                                            y_mean)
        energy = self.y_energy - 2 * float(self.y_sum @ y_mean) + n * float(y_mean @ y_mean)
        return zz, zy, energy


def solve_ridge(stats: RidgeStatistics, relative: float) -> tuple[Tensor, Tensor, float]:
    """Ridge regression with an intercept, from streamed statistics.

    Args:
        stats: the statistics of the rows to fit.
        relative: λ relative to the mean eigenvalue of the centred ``ZᵀZ``.

    Returns:
        ``(W, b, λ)`` with ``W`` ``(D, P)`` and ``b`` ``(P,)`` (float64): ``y ≈ z W + b``.
    """
    z_mean, y_mean = stats.z_sum / stats.count, stats.y_sum / stats.count
    zz, zy, _ = stats.centred(z_mean, y_mean)
    lam = relative * max(float(torch.diagonal(zz).mean()), 1e-12)
    eye = torch.eye(zz.shape[0], dtype=zz.dtype, device=zz.device)
    weight = torch.linalg.solve(zz + lam * eye, zy)
    return weight, y_mean - z_mean @ weight, lam


def _choose_ridge(train: RidgeStatistics, held_out: RidgeStatistics) -> tuple[float, dict[str, float]]:
    """The grid value ``r`` with the smallest held-out squared error, and the error of every ``r``.

    With ``ZᶜᵀZᶜ = QΛQᵀ`` and ``G = Qᵀ ZᶜᵀYᶜ``, ``W_λ = Q diag(1/(Λ+λ)) G``; the held-out error
    ``Σ‖y−ȳ‖² − 2 tr(W_λᵀ B) + tr(W_λᵀ A W_λ)`` (A, B the held-out statistics about the training means) then costs
    O(D²) per λ after one O(D²P) preparation.
    """
    z_mean, y_mean = train.z_sum / train.count, train.y_sum / train.count
    zz, zy, _ = train.centred(z_mean, y_mean)
    a, b, energy = held_out.centred(z_mean, y_mean)
    eigenvalues, q = torch.linalg.eigh(zz)
    g = q.T @ zy
    gram = g @ g.T  # Σ_p G_ip G_jp
    cross = ((q.T @ b) * g).sum(1)  # Σ_p G_ip (QᵀB)_ip
    rotated = q.T @ a @ q
    mean_eigenvalue = max(float(eigenvalues.mean()), 1e-12)
    errors: dict[str, float] = {}
    for r in RIDGE_GRID:
        d = 1.0 / (eigenvalues.clamp_min(0) + r * mean_eigenvalue)
        quadratic = float((d[:, None] * d[None, :] * rotated * gram).sum())
        errors[f"{r:.3g}"] = (energy - 2 * float((d * cross).sum()) + quadratic) / held_out.count
    best = min(RIDGE_GRID, key=lambda r: errors[f"{r:.3g}"])
    return best, errors


class LinearInverter(InversionMethod, nn.Module):
    """A ridge-regression map from (flattened, optionally hashed) features to pixels, an inversion method.

    Args:
        representation: the representation whose features it maps.
        image_size: ``(H, W)`` of the images.
        weight: ``(D', 3·H·W)``.
        bias: ``(3·H·W,)``.
        hash_index, hash_sign: the count sketch ``(D,)`` when the features are hashed to ``D'`` dimensions.
        metadata: what the run directory records.
        mean_image: the mean training image ``(3, H, W)``.
    """

    # buffers: they move with the module
    weight: Tensor
    bias: Tensor
    hash_index: Tensor | None
    hash_sign: Tensor | None

    def __init__(self, representation: Representation, image_size: tuple[int, int], weight: Tensor, bias: Tensor,
                 hash_index: Tensor | None = None, hash_sign: Tensor | None = None,
                 metadata: dict[str, Any] | None = None, mean_image: Tensor | None = None) -> None:
        super().__init__()
        self.representation = representation
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.spec: FeatureSpec = representation.spec(self.image_size)
        self.metadata = metadata or {}
        pixels = 3 * self.image_size[0] * self.image_size[1]
        inputs = self.spec.numel if hash_index is None else int(weight.shape[0])
        check_shape(weight, (inputs, pixels), "linear weight")
        check_shape(bias, (pixels,), "linear bias")
        self.register_buffer("weight", weight.float())
        self.register_buffer("bias", bias.float())
        self.register_buffer("hash_index", hash_index)
        self.register_buffer("hash_sign", hash_sign)
        self.register_buffer("mean_image", mean_image, persistent=False)

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return self.weight.device

    def project(self, features: Tensor) -> Tensor:
        """Flatten (and hash, when the model does) a batch of features.

        Shape:
            features: ``(B, *spec.shape)``; returns ``(B, D')``.
        """
        flat = features.flatten(1).float()
        if self.hash_index is None or self.hash_sign is None:
            return flat
        hashed = flat.new_zeros(flat.shape[0], self.weight.shape[0])
        return hashed.index_add_(1, self.hash_index, flat * self.hash_sign)

    @torch.no_grad()
    def decode(self, features: Tensor) -> Tensor:
        """``W·z + b`` as images.

        Shape:
            features: ``(B, *spec.shape)``; returns ``(B, 3, H, W)`` (not clamped).
        """
        check_shape(features, ("B", *self.spec.shape), "features")
        flat = torch.addmm(self.bias, self.project(features.to(self.device)), self.weight)
        return flat.view(-1, 3, *self.image_size)

    def save(self, run: str | Path) -> Path:
        """Write the run directory (the map and the mean image, see :mod:`repinv.rundir`)."""
        tensors = {"weight": self.weight, "bias": self.bias}
        if self.hash_index is not None and self.hash_sign is not None:
            tensors.update(hash_index=self.hash_index, hash_sign=self.hash_sign)
        RunDir(run).write_linear(tensors, self.metadata, self.mean_image)
        return Path(run)


def _count_sketch(inputs: int, outputs: int, seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, outputs, (inputs,), generator=generator)
    sign = torch.randint(0, 2, (inputs,), generator=generator).float() * 2 - 1
    return index, sign


@torch.no_grad()
def fit_linear(representation: str | Representation, data: str | Sequence[str], out: str | Path | None = None, *,
               rep_options: dict[str, Any] | None = None, image_size: int = 64, limit: int | None = None,
               ridge: float | str = "auto", projection: int | None = None, batch_size: int = 64, workers: int = 0,
               device: str | torch.device = "auto", seed: int = 0, show_progress: bool = False) -> LinearInverter:
    """Fit the linear baseline on training images (centre crops, no augmentation) and save it as a run directory.

    Args:
        representation: a name (with ``rep_options``) or a representation.
        data: training sources (folders, tar globs, ``builtin``).
        out: the run directory to write (None: do not save).
        rep_options: options of a named representation.
        image_size: image side.
        limit: use at most this many images (the first ones).
        ridge: ``"auto"`` (held-out choice, see the module note) or ``r``, λ relative to the mean eigenvalue.
        projection: hash the features to this many dimensions (default: only when there are more than 20,000,
            then to 4,096); ``0`` never hashes.
        batch_size: images per batch.
        workers: data-loader worker processes.
        device: where to compute (``"auto"``: CUDA when available).
        seed: seeds the hash.
        show_progress: show a progress bar.

    Returns:
        The fitted model, on ``device``, with its metadata.

    Raises:
        DataError: fewer than 2 images.
        InvalidOption: a bad ``ridge`` or ``projection``.
    """
    if not (ridge == "auto" or (isinstance(ridge, (int, float)) and not isinstance(ridge, bool) and ridge > 0)):
        raise InvalidOption(f"ridge must be 'auto' or a positive number (λ relative to the mean eigenvalue), "
                            f"got {ridge!r}")
    target = resolve_device(device)
    rep_options = dict(rep_options or {})
    if isinstance(representation, str):
        representation = create_representation(representation, **rep_options)
    rep = representation.to(target).eval()
    size = (int(image_size), int(image_size))
    spec = rep.spec(size)
    if projection is None:
        projection = DEFAULT_PROJECTION if spec.numel > MAX_DIRECT_FEATURES else 0
    if isinstance(projection, bool) or not isinstance(projection, int) or projection < 0:
        raise InvalidOption(f"projection must be a non-negative integer, got {projection!r}")
    sketch = _count_sketch(spec.numel, projection, seed) if projection else None
    inputs = projection or spec.numel
    dataset: ImageDataset | Subset[Tensor] = ImageDataset(data, size, train=False, seed=seed)
    total = len(dataset) if limit is None else min(limit, len(dataset))
    if total < 2:
        raise DataError(f"the linear baseline needs at least 2 training images, got {total}")
    dataset = Subset(dataset, range(total))
    holdout = total >= MIN_IMAGES_FOR_HOLDOUT and ridge == "auto"
    pixels = 3 * size[0] * size[1]
    fit, held = RidgeStatistics(inputs, pixels, target), RidgeStatistics(inputs, pixels, target)
    model = LinearInverter(rep, size, torch.zeros(inputs, pixels), torch.zeros(pixels), *(sketch or (None, None)))
    model.to(target)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    position = 0
    with progress_bar("fitting linear baseline", total=total, enabled=show_progress) as advance:
        for images in loader:
            images = images.to(target)
            z, y = model.project(rep(images)), images.flatten(1)
            is_held = (torch.arange(position, position + len(images), device=target) % HOLDOUT_EVERY
                       == HOLDOUT_EVERY - 1) & holdout
            if is_held.any():
                held.add(z[is_held], y[is_held])
            fit.add(z[~is_held], y[~is_held])
            position += len(images)
            advance(len(images))
    choice: dict[str, Any]
    if holdout:
        relative, errors = _choose_ridge(fit, held)
        choice = {"rule": f"held-out (every {HOLDOUT_EVERY}th image), grid r = 1e-6..1e2",
                  "held_out_images": held.count, "held_out_mse": errors}
        fit = fit.merged(held)
    else:
        relative = FALLBACK_RIDGE if ridge == "auto" else float(ridge)
        choice = {"rule": "given" if ridge != "auto" else f"fewer than {MIN_IMAGES_FOR_HOLDOUT} images: default"}
    weight, bias, lam = solve_ridge(fit, relative)
    metadata = {
        "repinv_version": VERSION,
        "run_format": RunDir.FORMAT,
        "method": "linear",
        "representation": {"name": rep.name, "options": rep.config()},
        "image_size": list(size),
        "feature_shape": list(spec.shape),
        "projection": {"kind": "count-sketch", "dimensions": projection, "seed": seed} if projection else None,
        "ridge": {"relative": relative, "lambda": lam, **choice},
        "images": fit.count,
        "data": [data] if isinstance(data, str) else list(data),
    }
    mean_image = (fit.y_sum / fit.count).float().view(3, *size)
    hash_index, hash_sign = sketch or (None, None)
    model = LinearInverter(rep, size, weight.float(), bias.float(), hash_index, hash_sign, metadata=metadata,
                           mean_image=mean_image).to(target).eval()
    if out is not None:
        model.save(out)
    return model


def load_linear(run: str | Path | RunDir, device: str | torch.device = "auto") -> LinearInverter:
    """Load a linear baseline from its run directory.

    Raises:
        CheckpointError: missing files, or tensors that do not fit the representation the metadata names.
    """
    folder = RunDir(run).require()
    meta, tensors = folder.read_linear()
    rep_meta, image_size = folder.identity()
    representation = create_representation(rep_meta["name"], **rep_meta["options"])
    spec = representation.spec(image_size)
    if list(spec.shape) != list(meta.get("feature_shape", spec.shape)):
        raise CheckpointError(f"{rep_meta['name']} now gives features {spec} at {image_size}, but the linear "
                              f"baseline in {folder} was fitted on {'x'.join(map(str, meta['feature_shape']))}")
    try:
        model = LinearInverter(representation, image_size, tensors["weight"], tensors["bias"],
                               tensors.get("hash_index"), tensors.get("hash_sign"), meta, folder.read_mean_image())
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"the linear baseline in {folder} does not match its metadata ({error})") from None
    return model.to(resolve_device(device)).eval()
