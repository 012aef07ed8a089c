"""Optimization-based inversion (Mahendran & Vedaldi, "Understanding Deep Image Representations by Inverting
Them", CVPR 2015): find the image whose features match, under a natural-image prior.

For each target Φ₀ (one image's features) it minimizes over pixels ``x``

    E(x) = ‖Φ(x) − Φ₀‖² / ‖Φ₀‖²  +  λ_α · R_α(x − m)  +  λ_V · R_V^β(x)

* ``R_α(u) = Σ |u|^α`` over pixels and channels, ``u`` the image minus the mean colour ``m``;
* ``R_V^β(x) = Σ_ij ((x_i,j+1 − x_i,j)² + (x_i+1,j − x_i,j)²)^(β/2)`` per channel, summed (the last row and column
  have no forward neighbour and contribute their existing difference only, as in the authors' code);
* ``λ_α = 1 / (H·W·B^α)`` and ``λ_V = 1 / (H·W·V^β)``: the prior terms count ~1 per pixel for an image whose
  values stay within ±B of the mean and whose neighbours differ by ~V.

Defaults, and where they come from (repinv images are in [0, 1]; the authors' images are 0–255, mean-subtracted,
so their constants are divided by 255):

* ``α = 6`` and ``β = 2``: the CVPR 2015 paper (section 3; β = 1, plain TV, gives spikes — from its text as we
  know it, not re-read here) and, checked here, the authors' released code (``deep-goggle``,
  ``experiments/experiment_shallow.m``: ``beta = 6``,
  ``TVbeta = 2`` for HOG and DSIFT).
* ``B = 80/255`` and ``V = B/6.5``: the normalization constants of the authors' journal version (Mahendran &
  Vedaldi, "Visualizing Deep Convolutional Neural Networks Using Natural Pre-images", IJCV 2016, section 3.3).
  We could not read that PDF here; the values are as several independent reimplementations state them. The CVPR
  paper balances the terms with hand-tuned λ's instead; ``alpha_weight`` / ``tv_weight`` multiply λ_α, λ_V.
* Gradient descent with momentum 0.9, the momentum reset whenever the learning rate changes, and a learning
  rate divided by 10 three times, 200 iterations each (800 iterations): the released code's schedule for HOG
  and DSIFT (``experiment_shallow.m``, ``core/invert_nn.m``). That code scales every step by σ², σ the average
  Euclidean norm of mean-subtracted images, which makes the step independent of the pixel units and of the image
  size; we do the same with σ² = 3·H·W·s², s = 0.27 (the RMS deviation from the mean colour of Tiny ImageNet
  validation photos, measured for repinv; the authors' σ came from their own image set). With ``steps`` other
  than 800 the four phases keep their proportions.
* **Departure: the initial learning rate is 0.0005, not the released code's 0.004.** That value went with the
  code's much weaker prior weights (λ's about 100× below the B/V normalization); with B and V the total-variation
  term alone is unstable under momentum 0.9 above about 0.0025. 0.0005 was the best of {0.0005, 0.001, 0.002} on
  8 Tiny ImageNet validation images (HOG, 64x64, 400 iterations); all three were stable.
* **The bounded range**: after every step each pixel is kept within ±B₊ = ±2B of the mean colour (the journal
  version's hard bound B₊ = 2B; ``clip=false`` turns it off, as in CVPR 2015). Without it the α = 6 term, whose
  curvature grows as the fourth power of the deviation, makes the noisy start diverge at any useful rate.
* Initialization as in the released code: the mean colour plus Gaussian noise of per-pixel standard deviation s.
* No jitter: the CVPR method has none (the IJCV version shifts the image randomly); ``jitter=N`` shifts it by up
  to N pixels per iteration.

The result is not clamped to [0, 1] (it stays within the bounded range); the metrics clamp it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

from repinv.errors import NotDifferentiable
from repinv.inversion.base import InversionMethod
from repinv.options import dataclass_options, validate_options
from repinv.progress import progress_bar
from repinv.representations.base import FeatureSpec, Representation
from repinv.utils import check_shape, resolve_device

__all__ = ["OptimizeSettings", "OPTIMIZE_OPTIONS", "OptimizationResult", "OptimizationInverter", "optimize_images",
           "check_differentiable", "total_variation", "MEAN_COLOUR", "PIXEL_SIGMA"]

#: The per-channel mean colour of ImageNet (torchvision's normalization), the centre of the α-norm prior.
MEAN_COLOUR = (0.485, 0.456, 0.406)
#: RMS deviation of natural-image pixels from the mean colour, in [0, 1] units (see the module note).
PIXEL_SIGMA = 0.27


@dataclass(frozen=True)
class OptimizeSettings:
    """Settings of the optimization; the defaults are Mahendran & Vedaldi's (see the module note)."""

    steps: int = 800  # gradient iterations in total (4 phases of equal length)
    lr: float = 0.0005  # initial learning rate, relative to σ² (see the module note: not the code's 0.004)
    lr_decay: float = 0.1  # factor between consecutive phases
    phases: int = 4  # learning-rate phases
    momentum: float = 0.9
    alpha: float = 6.0  # exponent of the α-norm prior
    beta: float = 2.0  # exponent of the total-variation prior
    bound: float = 80 / 255  # B: typical largest deviation from the mean colour
    tv_bound: float | None = None  # V: typical neighbour difference (None: B / 6.5)
    alpha_weight: float = 1.0  # multiplies λ_α = 1 / (H·W·B^α)
    tv_weight: float = 1.0  # multiplies λ_V = 1 / (H·W·V^β)
    jitter: int = 0  # random shift of up to this many pixels per iteration (0: none, as in CVPR 2015)
    clip: bool = True  # keep each pixel within ±B₊ = ±2B of the mean colour after every step (IJCV 2016)
    seed: int = 0  # seeds the initial noise and the jitter

    def __post_init__(self) -> None:
        # Checked and converted like every option, so `--opt steps=200.0` is 200 and `--opt momentum=abc` is one
        # clear line, whether the settings come from the command line or from Python.
        given = {item.name: getattr(self, item.name) for item in fields(self)}
        for name, value in validate_options("optimize", given, OPTIMIZE_OPTIONS).items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> OptimizeSettings:
        """Build from ``--opt KEY=VALUE`` style options.

        Raises:
            InvalidOption: an unknown name (the valid ones listed, nearest first) or a bad value.
        """
        return cls(**validate_options("optimize", options, OPTIMIZE_OPTIONS))

    @property
    def v(self) -> float:
        """V, the typical neighbour difference."""
        return self.tv_bound if self.tv_bound is not None else self.bound / 6.5

    def learning_rate(self, iteration: int) -> float:
        """The learning rate of ``iteration`` (0-based): ``lr · lr_decay^phase``."""
        phase = min(self.phases - 1, iteration * self.phases // self.steps)
        return self.lr * self.lr_decay ** phase

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings."""
        return asdict(self)


#: The settings as options: each field's kind and default, with the bounds the optimization needs.
OPTIMIZE_OPTIONS = dataclass_options(OptimizeSettings, {
    "steps": {"minimum": 1}, "lr": {"above": 0}, "lr_decay": {"minimum": 0}, "phases": {"minimum": 1},
    "momentum": {"minimum": 0, "below": 1}, "alpha": {"above": 0}, "beta": {"above": 0}, "bound": {"above": 0},
    "tv_bound": {"above": 0}, "alpha_weight": {"minimum": 0}, "tv_weight": {"minimum": 0}, "jitter": {"minimum": 0},
    "seed": {"minimum": 0},
})


@dataclass
class OptimizationResult:
    """What :func:`optimize_images` returns."""

    images: Tensor  # (B, 3, H, W), not clamped
    feature_loss: list[float] = field(default_factory=list)  # mean ‖Φ(x) − Φ₀‖²/‖Φ₀‖² over the batch, per iteration
    objective: list[float] = field(default_factory=list)  # mean E(x) over the batch, per iteration


def check_differentiable(representation: Representation) -> None:
    """Refuse a representation gradients cannot flow through.

    Raises:
        NotDifferentiable: naming the representation and what to use instead.
    """
    if not representation.differentiable:
        raise NotDifferentiable(f"optimization-based inversion needs a differentiable representation; "
                                f"{representation.name or type(representation).__name__} is not (its features are "
                                f"piecewise constant in the pixels): train a decoder for it instead")


def total_variation(images: Tensor, beta: float) -> Tensor:
    """``R_V^β`` per image (forward differences; none beyond the last row and column).

    Shape:
        images: ``(B, C, H, W)``; returns ``(B,)``.
    """
    dx = torch.zeros_like(images)
    dy = torch.zeros_like(images)
    dx[..., :, :-1] = images[..., :, 1:] - images[..., :, :-1]
    dy[..., :-1, :] = images[..., 1:, :] - images[..., :-1, :]
    squared = dx.square() + dy.square()
    # β = 2 needs no root; otherwise a floor keeps the gradient of the root finite where the image is flat.
    variation = squared if beta == 2 else (squared + 1e-8).pow(beta / 2)
    return variation.flatten(1).sum(1)


def _jittered(images: Tensor, jitter: int, generator: torch.Generator) -> Tensor:
    if jitter <= 0:
        return images
    dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
    return torch.roll(images, shifts=(dy, dx), dims=(-2, -1))


def optimize_images(representation: Representation, targets: Tensor, image_size: tuple[int, int],
                    settings: OptimizeSettings | None = None, *, show_progress: bool = False,
                    initial: Tensor | None = None) -> OptimizationResult:
    """Invert features by optimizing pixels (Mahendran & Vedaldi; see the module note for the defaults).

    Images of one batch are optimized together but independently: each has its own normalized objective, and
    the sum's gradient with respect to one image is that image's gradient.

    Args:
        representation: a differentiable representation, on the device to use.
        targets: the features Φ₀ to invert.
        image_size: ``(H, W)`` of the images to find.
        settings: the optimization settings (default: the paper's).
        show_progress: show a progress bar over iterations.
        initial: start here instead of the mean colour plus noise.

    Returns:
        The images found and the per-iteration feature loss and objective (batch means).

    Shape:
        targets: ``(B, *spec.shape)``; initial: ``(B, 3, H, W)``; result images ``(B, 3, H, W)``.

    Raises:
        NotDifferentiable: the representation is not differentiable.
        ShapeError: targets do not have the representation's feature shape at ``image_size``.
    """
    check_differentiable(representation)
    settings = settings or OptimizeSettings()
    height, width = int(image_size[0]), int(image_size[1])
    spec: FeatureSpec = representation.spec((height, width))
    check_shape(targets, ("B", *spec.shape), "targets")
    parameter = next(iter(representation.parameters()), None)
    device = parameter.device if parameter is not None else targets.device
    targets = targets.detach().to(device, torch.float32)
    batch = targets.shape[0]
    generator = torch.Generator().manual_seed(settings.seed)
    mean = torch.tensor(MEAN_COLOUR, device=device).view(1, 3, 1, 1)
    if initial is None:
        noise = torch.randn(batch, 3, height, width, generator=generator).to(device)
        x = mean + PIXEL_SIGMA * noise
        if settings.clip:
            x = torch.minimum(torch.maximum(x, mean - 2 * settings.bound), mean + 2 * settings.bound)
    else:
        check_shape(initial, (batch, 3, height, width), "initial images")
        x = initial.detach().to(device, torch.float32).clone()
    target_energy = targets.flatten(1).square().sum(1).clamp_min(1e-12)
    lambda_alpha = settings.alpha_weight / (height * width * settings.bound ** settings.alpha)
    lambda_tv = settings.tv_weight / (height * width * settings.v ** settings.beta)
    sigma_squared = 3 * height * width * PIXEL_SIGMA ** 2
    velocity = torch.zeros_like(x)
    result = OptimizationResult(images=x)
    previous_lr = math.nan
    was_training = representation.training
    representation.eval()
    try:
        with torch.enable_grad(), progress_bar("optimizing", total=settings.steps, enabled=show_progress) as advance:
            for iteration in range(settings.steps):
                x.requires_grad_(True)
                features = representation(_jittered(x, settings.jitter, generator))
                feature_loss = (features.float() - targets).flatten(1).square().sum(1) / target_energy
                prior_alpha = (x - mean).abs().pow(settings.alpha).flatten(1).sum(1)
                objective = feature_loss + lambda_alpha * prior_alpha + lambda_tv * total_variation(x, settings.beta)
                (gradient,) = torch.autograd.grad(objective.sum(), x)
                lr = settings.learning_rate(iteration)
                if lr != previous_lr:  # the old momentum would overshoot at the new rate (the authors' code)
                    velocity.zero_()
                    previous_lr = lr
                with torch.no_grad():
                    velocity.mul_(settings.momentum).sub_(gradient, alpha=lr * sigma_squared)
                    x = x.detach() + velocity
                    if settings.clip:
                        x = torch.minimum(torch.maximum(x, mean - 2 * settings.bound), mean + 2 * settings.bound)
                result.feature_loss.append(feature_loss.detach().mean().item())
                result.objective.append(objective.detach().mean().item())
                advance(1, status=f"feature loss {result.feature_loss[-1]:.4f}")
    finally:
        representation.train(was_training)
    result.images = x.detach()
    return result


class OptimizationInverter(InversionMethod):
    """Optimization-based inversion as an inversion method (``features``, ``decode``, ``reconstruct``), so scoring
    and comparison treat it like a decoder.

    Args:
        representation: a differentiable representation.
        image_size: ``(H, W)`` of the images to reconstruct.
        settings: the optimization settings (default: the paper's).
        device: where to optimize (``"auto"``: CUDA when available).
        show_progress: show a progress bar per batch.
    """

    def __init__(self, representation: Representation, image_size: int | tuple[int, int],
                 settings: OptimizeSettings | None = None, device: str | torch.device = "auto",
                 show_progress: bool = False) -> None:
        check_differentiable(representation)
        size = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.image_size = (int(size[0]), int(size[1]))
        self.settings = settings or OptimizeSettings()
        self._device = resolve_device(device)
        self.representation = representation.to(self._device).eval().requires_grad_(False)
        self.spec = representation.spec(self.image_size)
        self.show_progress = show_progress
        self.mean_image: Tensor | None = None
        self.metadata: dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        """Where it optimizes."""
        return self._device

    def decode(self, features: Tensor) -> Tensor:
        """Optimize images whose features match ``features``.

        Shape:
            features: ``(B, *spec.shape)``; returns ``(B, 3, H, W)`` (not clamped).
        """
        return optimize_images(self.representation, features, self.image_size, self.settings,
                               show_progress=self.show_progress).images

    def warm_up(self, features: Tensor) -> None:
        """Two iterations: they warm the kernels without paying for a whole optimization."""
        quick = dataclasses.replace(self.settings, steps=2, phases=1)
        optimize_images(self.representation, features, self.image_size, quick)

    def describe(self) -> dict[str, Any]:
        """What a result file records about this method."""
        return {"method": "optimize", "representation": {"name": self.representation.name,
                                                         "options": self.representation.config()},
                "settings": self.settings.to_dict()}
