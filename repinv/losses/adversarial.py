"""The ``adversarial`` loss term: a small convolutional discriminator, trained in alternation with the decoder, that
tells images from reconstructions (DeePSiM's adversarial loss, Dosovitskiy & Brox 2016).

The decoder is trained to make the discriminator call its reconstructions real (the non-saturating loss,
``softplus(-D(x̂))``); after each decoder step the discriminator takes one step of its own Adam on the same batch
(``softplus(-D(x)) + softplus(D(x̂))``). Its weights and optimizer state go into the run's resume state, so a
resumed run continues exactly.

The game is guarded: a discriminator that wins outright, its accuracy at or above ``accuracy`` (default 99%) over
the last ``window`` steps while the loss's other terms rose (their mean over that window above their mean over the
window before), stops training with one line, as does a loss that is not finite.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repinv.files import optimizer_from_tensors, optimizer_to_tensors, under_prefix
from repinv.losses.base import LossTerm
from repinv.options import Option, validate_options
from repinv.registry.hookspecs import hookimpl
from repinv.representations.base import FeatureSpec

__all__ = ["Discriminator", "AdversarialLoss", "ADVERSARIAL_OPTIONS"]

#: The options of the ``adversarial`` term.
ADVERSARIAL_OPTIONS = (
    Option("lr", 2e-4, float, "the discriminator's Adam learning rate", above=0),
    Option("betas", (0.5, 0.999), float, "the discriminator's Adam betas", minimum=0, below=1, length=2),
    Option("width", 32, int, "channels of the discriminator's first convolution (doubling twice)", minimum=1),
    Option("condition", False, bool, "the discriminator also sees the features the images came from"),
    Option("window", 200, int, "steps over which the guard judges the game", minimum=1),
    Option("accuracy", 0.99, float, "the discriminator's accuracy that, held over a window while the other terms "
                                    "rise, stops training", above=0.5, maximum=1),
)
_SLOPE = 0.2


class Discriminator(nn.Module):
    """Three stride-2 4x4 convolutions and a 3x3 one, global average pooling and a linear layer to one logit; with
    ``spec`` it also sees the features, projected to the channels of its last convolution and added there.

    Args:
        width: channels of the first convolution (then ``2·width``, ``4·width``, ``4·width``).
        spec: the features' shape, to condition on them; ``None`` for images alone.

    Shape:
        images ``(B, 3, H, W)`` (any size of at least 8x8), features ``(B, *spec)``; returns ``(B,)`` logits.
    """

    def __init__(self, width: int, spec: FeatureSpec | None = None) -> None:
        super().__init__()
        channels = (3, width, 2 * width, 4 * width)
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(channels):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(_SLOPE)]
        self.body = nn.Sequential(*layers)
        self.condition: nn.Module | None = None
        if spec is not None:
            self.condition = nn.Conv2d(spec.shape[0], 4 * width, 1) if spec.kind == "map" else \
                nn.Linear(spec.shape[0], 4 * width)
        self.last = nn.Conv2d(4 * width, 4 * width, 3, padding=1)
        self.head = nn.Linear(4 * width, 1)

    def forward(self, images: Tensor, features: Tensor | None = None) -> Tensor:
        x = self.body(images)
        if self.condition is not None and features is not None:
            cue = self.condition(features.float())
            cue = F.interpolate(cue, size=x.shape[-2:], mode="bilinear", align_corners=False) if cue.dim() == 4 \
                else cue[:, :, None, None]
            x = x + cue
        x = F.leaky_relu(self.last(x), _SLOPE)
        logits: Tensor = self.head(x.mean(dim=(2, 3))).squeeze(1)
        return logits


class AdversarialLoss(LossTerm):
    """``adversarial``: the decoder's non-saturating GAN loss against a discriminator trained alongside.

    Args:
        **options: see :data:`ADVERSARIAL_OPTIONS` (``lr``, ``betas``, ``width``, ``condition``, ``window``,
            ``accuracy``).

    Raises:
        InvalidOption: an unknown option or a bad value.
    """

    trains_a_model = True

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = validate_options("adversarial loss", options, ADVERSARIAL_OPTIONS)
        self.accuracies: deque[float] = deque(maxlen=self.options["window"])
        self.discriminator: Discriminator | None = None
        self.last_loss = 0.0  # the discriminator's loss at its last step
        self.optimizer: torch.optim.Optimizer | None = None

    def setup(self, spec: FeatureSpec, image_size: tuple[int, int]) -> None:
        """Build the discriminator (it needs the features' shape to condition on them) and its optimizer."""
        self.discriminator = Discriminator(self.options["width"], spec if self.options["condition"] else None)
        self.discriminator.requires_grad_(False)  # only its own step, in after_step, trains it

    def _optimizer(self) -> torch.optim.Optimizer:
        # Made on first use, after the term has been moved to its device.
        if self.optimizer is None:
            assert self.discriminator is not None, "setup() builds the discriminator"
            self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.options["lr"],
                                              betas=self.options["betas"])
        return self.optimizer

    def _judge(self, images: Tensor, features: Tensor) -> Tensor:
        assert self.discriminator is not None, "setup() builds the discriminator"
        logits: Tensor = self.discriminator(images.float(), features.detach() if self.options["condition"] else None)
        return logits

    def forward(self, reconstructions: Tensor, images: Tensor, features: Tensor) -> Tensor:
        return F.softplus(-self._judge(reconstructions, features)).mean()

    def after_step(self, reconstructions: Tensor, images: Tensor, features: Tensor) -> dict[str, float]:
        assert self.discriminator is not None, "setup() builds the discriminator"
        optimizer = self._optimizer()
        self.discriminator.requires_grad_(True)
        try:
            real, fake = self._judge(images, features), self._judge(reconstructions.detach(), features)
            loss = F.softplus(-real).mean() + F.softplus(fake).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward untyped
            optimizer.step()
        finally:
            self.discriminator.requires_grad_(False)
        accuracy = 0.5 * ((real > 0).float().mean() + (fake < 0).float().mean()).item()
        self.accuracies.append(accuracy)
        self.last_loss = loss.item()
        return {"discriminator": self.last_loss, "accuracy": accuracy}

    def failure(self, other_terms: Sequence[float]) -> str | None:
        if not math.isfinite(self.last_loss):
            return f"the discriminator's loss is {self.last_loss} (not finite)"
        window = self.options["window"]
        if len(self.accuracies) < window or len(other_terms) < 2 * window:
            return None
        accuracy = sum(self.accuracies) / window
        if accuracy < self.options["accuracy"]:
            return None  # the common case: no need to look at the other terms
        recent = list(other_terms)[-2 * window:]
        before, now = sum(recent[:window]) / window, sum(recent[window:]) / window
        if now > before:
            return (f"the discriminator wins outright: {100 * accuracy:.1f}% accuracy over the last {window} steps "
                    f"while the other loss terms rose from {before:.4g} to {now:.4g}")
        return None

    def training_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        assert self.discriminator is not None, "setup() builds the discriminator"
        optimizer_tensors, optimizer_json = optimizer_to_tensors(self._optimizer())
        tensors = {**{f"discriminator.{k}": v for k, v in self.discriminator.state_dict().items()},
                   **optimizer_tensors}
        return tensors, {"optimizer": optimizer_json, "accuracies": list(self.accuracies)}

    def load_training_state(self, tensors: Mapping[str, Tensor], saved: Mapping[str, Any]) -> None:
        assert self.discriminator is not None, "setup() builds the discriminator"
        self.discriminator.load_state_dict(under_prefix(tensors, "discriminator."))
        optimizer_from_tensors(self._optimizer(), tensors, saved["optimizer"])
        self.accuracies.extend(saved.get("accuracies", []))


def _adversarial_loss(**options: Any) -> AdversarialLoss:
    return AdversarialLoss(**options)


@hookimpl
def register_losses(register: Callable[..., None]) -> None:
    """``adversarial``, a discriminator trained alongside (DeePSiM)."""
    register("adversarial", _adversarial_loss, description="a discriminator trained alongside (DeePSiM); options: "
                                                           "lr, betas, width, condition, window, accuracy")
