"""A training loss as a weighted sum of named terms, each registered by a plugin (``register_losses``).

A term is a :class:`LossTerm`: it compares a batch of reconstructions with the images (and may look at the
features they came from). A term that trains a model of its own, as the adversarial term's discriminator, does so
in :meth:`LossTerm.after_step`, keeps that model's weights and optimizer in :meth:`LossTerm.training_state`, and
says through :meth:`LossTerm.failure` when training must stop.

The loss is written ``mse + 0.01*feature + 0.001*adversarial`` (:func:`parse_loss`) and stored as ``{"mse": 1.0,
"feature": 0.01, "adversarial": 0.001}`` in the run's settings, with each term's options, so that ``--resume`` and
:func:`repinv.load` rebuild it; runs written before losses existed have neither and train with ``mse`` alone.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from repinv.errors import InvalidOption, TrainingFailed, UnknownName
from repinv.files import under_prefix
from repinv.registry.manager import get_registry
from repinv.representations.base import FeatureSpec

__all__ = ["LossTerm", "TrainingLoss", "parse_loss", "format_loss", "DEFAULT_LOSS", "list_losses"]

#: The paper's loss, and the default: pixel MSE alone.
DEFAULT_LOSS = {"mse": 1.0}

_TERM = re.compile(r"^\s*(?:(?P<weight>[^*\s]+)\s*\*\s*)?(?P<name>[A-Za-z_][\w.-]*)\s*$")


class LossTerm(nn.Module, ABC):
    """One term of a training loss; a ``register_losses`` plugin's factory returns one.

    Subclasses implement :meth:`forward`; the other methods matter only to terms that train a model of their own
    (and set :attr:`trains_a_model`). Parameters of a term are never trained by the decoder's optimizer.

    Attributes:
        trains_a_model: the term trains a model of its own in :meth:`after_step` (a discriminator).
    """

    trains_a_model: bool = False

    @abstractmethod
    def forward(self, reconstructions: Tensor, images: Tensor, features: Tensor) -> Tensor:
        """The term's value for a batch.

        Args:
            reconstructions: the decoder's output, differentiable.
            images: the images the features came from, at the reconstructions' size.
            features: the representation's features of ``images`` (for terms that condition on them).

        Returns:
            A scalar tensor (the mean over the batch), differentiable with respect to ``reconstructions``.

        Shape:
            reconstructions, images: ``(B, 3, H, W)``; features: ``(B, *spec)``.
        """

    def after_step(self, reconstructions: Tensor, images: Tensor, features: Tensor) -> dict[str, float]:
        """Train the term's own model on the step's batch, after the decoder's update (nothing by default).

        Args:
            reconstructions: the step's reconstructions, detached.
            images: as for :meth:`forward`.
            features: as for :meth:`forward`.

        Returns:
            Values to log beside the term (e.g. the discriminator's loss and accuracy), by name.
        """
        return {}

    def setup(self, spec: FeatureSpec, image_size: tuple[int, int]) -> None:
        """Called once before training with the features' shape and the images' size (nothing by default), for
        a term whose own model depends on them."""

    def training_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """What a resumed run needs to continue exactly: the term's trained weights and optimizer state, as tensors
        and a JSON-able remainder (nothing by default)."""
        return {}, {}

    def load_training_state(self, tensors: Mapping[str, Tensor], saved: Mapping[str, Any]) -> None:
        """Restore what :meth:`training_state` returned."""

    def failure(self, other_terms: Sequence[float]) -> str | None:
        """Why training must stop now, or ``None``; checked after every step.

        Args:
            other_terms: the weighted sum of the loss's other terms at each step so far (most recent last), so
                that a term can tell a game lost from a game still being played.
        """
        return None


def list_losses() -> dict[str, str]:
    """The registered loss terms and their descriptions."""
    return {name: entry.description for name, entry in sorted(get_registry().losses.items())}


def _unknown(name: str) -> UnknownName:
    return UnknownName("loss term", name, get_registry().losses, hint="`repinv losses` lists them")


def parse_loss(text: str | Mapping[str, Any]) -> dict[str, float]:
    """Read a loss written as terms joined by ``+``, each ``NAME`` or ``WEIGHT*NAME``; a mapping is checked as is.

    Args:
        text: e.g. ``"mse + 0.01*feature"``, or ``{"mse": 1.0, "feature": 0.01}``.

    Returns:
        ``{name: weight}`` in the order given.

    Raises:
        InvalidOption: a malformed term, a weight that is not a positive finite number, or a term given twice.
        UnknownName: a term nobody registered (the message lists those that exist).
    """
    pairs: list[tuple[str, Any]]
    if isinstance(text, Mapping):
        pairs = list(text.items())
    else:
        pairs = []
        for part in str(text).split("+"):
            match = _TERM.match(part)
            if match is None:
                raise InvalidOption(f"cannot read loss term {part.strip()!r} in {text!r}: write terms as NAME or "
                                    f"WEIGHT*NAME joined by +, e.g. 'mse + 0.01*feature' (terms: "
                                    f"{', '.join(list_losses())})")
            pairs.append((match["name"], match["weight"] if match["weight"] is not None else 1.0))
    if not pairs:
        raise InvalidOption(f"the loss needs at least one term (terms: {', '.join(list_losses())})")
    weights: dict[str, float] = {}
    for name, weight in pairs:
        if name not in get_registry().losses:
            raise _unknown(name)
        try:
            value = float(weight)
        except (TypeError, ValueError):
            value = math.nan
        if isinstance(weight, bool) or not math.isfinite(value) or value <= 0:
            raise InvalidOption(f"loss term {name} needs a positive weight, got {weight!r} (write WEIGHT*NAME, "
                                f"e.g. 0.01*{name}; terms: {', '.join(list_losses())})")
        if name in weights:
            raise InvalidOption(f"loss term {name} is given twice; give it once, with the sum of its weights")
        weights[name] = value
    return weights


def format_loss(weights: Mapping[str, float]) -> str:
    """The loss as :func:`parse_loss` reads it: ``{"mse": 1.0, "feature": 0.01}`` is ``"mse + 0.01*feature"``."""
    return " + ".join(name if weight == 1 else f"{weight:g}*{name}" for name, weight in weights.items())


class TrainingLoss(nn.Module):
    """The weighted sum of a run's loss terms, built by name through the registry.

    Args:
        weights: ``{name: weight}`` (see :func:`parse_loss`).
        options: ``{name: {option: value}}`` for the terms that take options.
        spec: the shape of the features the decoder inverts (for :meth:`LossTerm.setup`).
        image_size: ``(H, W)`` of the images the terms compare.
        device: where the terms' models live.

    Raises:
        UnknownName: a term nobody registered.
        InvalidOption: a bad weight, options for a term that is not in the loss, or options its factory refuses.
    """

    def __init__(self, weights: Mapping[str, Any], options: Mapping[str, Mapping[str, Any]] | None,
                 spec: FeatureSpec, image_size: tuple[int, int], device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.weights = parse_loss(weights)
        options = dict(options or {})
        stray = sorted(set(options) - set(self.weights))
        if stray:
            raise InvalidOption(f"options for loss term{'s' if len(stray) > 1 else ''} {', '.join(stray)}, which "
                                f"the loss ({format_loss(self.weights)}) does not have")
        self.terms = nn.ModuleDict()
        for name in self.weights:
            term = get_registry().get("loss", name).obj(**dict(options.get(name) or {}))
            if not isinstance(term, LossTerm):
                raise TypeError(f"the factory of loss term {name!r} returned {type(term).__name__}, not a LossTerm")
            term.setup(spec, image_size)
            self.terms[name] = term.to(device)
        self._ordered = [(name, cast(LossTerm, term)) for name, term in self.terms.items()]
        # The weighted sum of the terms that train no model of their own, per step, for the terms' failure checks.
        self.others: deque[float] = deque(maxlen=10_000)

    def items(self) -> list[tuple[str, LossTerm]]:
        """The terms by name, in the loss's order."""
        return self._ordered

    def forward(self, reconstructions: Tensor, images: Tensor, features: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The total and each term's (unweighted) value.

        Shape:
            as :meth:`LossTerm.forward`; returns a scalar and ``{name: scalar}``.
        """
        values = {name: term(reconstructions, images, features) for name, term in self.items()}
        total: Tensor | None = None
        for name, value in values.items():
            weighted = value if self.weights[name] == 1 else self.weights[name] * value
            total = weighted if total is None else total + weighted
        assert total is not None  # parse_loss refuses an empty loss
        return total, values

    def after_step(self, reconstructions: Tensor, images: Tensor, features: Tensor,
                   values: Mapping[str, float]) -> dict[str, float]:
        """Let each term train its own model, then check every term; values to log.

        Args:
            reconstructions: the step's reconstructions, detached.
            images: the step's images.
            features: the step's features.
            values: each term's value at this step.

        Raises:
            TrainingFailed: a value that is not finite, or a term's :meth:`LossTerm.failure`.
        """
        broken = [name for name, value in values.items() if not math.isfinite(value)]
        if broken:
            raise TrainingFailed(f"loss term {broken[0]} is {values[broken[0]]} (not finite); the run keeps its last "
                                 "checkpoint: resume it with a lower rate, or lower that term's weight")
        logged: dict[str, float] = {}
        for name, term in self.items():
            for key, value in term.after_step(reconstructions, images, features).items():
                logged[f"{name}_{key}"] = value
        self.others.append(sum(self.weights[name] * values[name] for name, term in self.items()
                               if not term.trains_a_model))
        for name, term in self.items():
            reason = term.failure(self.others)
            if reason is not None:
                raise TrainingFailed(f"{reason}; the run keeps its last checkpoint (resume it with a lower "
                                     f"{name} weight or learning rate)")
        return logged

    def training_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Every term's :meth:`LossTerm.training_state`: tensors keyed ``NAME.KEY``, the rest by term name."""
        tensors: dict[str, Tensor] = {}
        saved: dict[str, Any] = {}
        for name, term in self.items():
            own, rest = term.training_state()
            tensors.update({f"{name}.{key}": value for key, value in own.items()})
            if rest:
                saved[name] = rest
        return tensors, saved

    def load_training_state(self, tensors: Mapping[str, Tensor], saved: Mapping[str, Any]) -> None:
        """Restore what :meth:`training_state` returned."""
        for name, term in self.items():
            if term.trains_a_model:
                term.load_training_state(under_prefix(tensors, f"{name}."), saved.get(name, {}))
