"""Plugin hook specifications.

A plugin is a module (found through the ``repinv`` entry-point group) with functions decorated by
:data:`hookimpl` and named like the hooks below. Each hook receives a ``register`` callback; it calls it once per
thing it adds and returns nothing.

Example:
    >>> from repinv import hookimpl
    >>> @hookimpl
    ... def register_representations(register):
    ...     register("myrep", make_myrep, description="my features")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy
from torch import Tensor, nn

from repinv.representations.base import FeatureSpec, Representation

__all__ = [
    "PROJECT",
    "hookspec",
    "hookimpl",
    "RepresentationFactory",
    "DecoderBuilder",
    "Perturbation",
    "LossFactory",
    "register_representations",
    "register_decoders",
    "register_losses",
    "register_perturbations",
]

PROJECT = "repinv"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class RepresentationFactory(Protocol):
    """``factory(variant, **options) -> Representation``; raises ``UnknownVariant`` for an unknown variant."""

    def __call__(self, variant: str | None, **options: Any) -> Representation: ...


class DecoderBuilder(Protocol):
    """``builder(spec, output_size, **options) -> nn.Module`` whose ``config()`` rebuilds it."""

    def __call__(self, spec: FeatureSpec, output_size: tuple[int, int], **options: Any) -> nn.Module: ...


class LossFactory(Protocol):
    """``factory(**options) -> LossTerm`` (:class:`repinv.losses.LossTerm`); raises ``InvalidOption`` for a bad
    option."""

    def __call__(self, **options: Any) -> nn.Module: ...


class Perturbation(Protocol):
    """``fn(features, arg, *, generator) -> features``, applied to each sample of a batch independently."""

    def __call__(self, features: Tensor, arg: str | None, *, generator: Any) -> Tensor: ...


@hookspec
def register_representations(register: Callable[..., None]) -> None:
    """Register representation families.

    Args:
        register: ``register(family, factory, *, description="", variants=None)``. ``factory(variant, **options)``
            returns a :class:`~repinv.Representation`; ``variants()`` (optional) returns the variant names
            ``repinv reps FAMILY`` lists. A family too large to list whole may take one argument instead,
            ``variants(asked)``: what the user typed after ``family:`` (``None`` for a bare family or a pattern
            over families), e.g. ``"resnet18"`` for ``repinv reps timm:resnet18``.
    """


@hookspec
def register_decoders(register: Callable[..., None]) -> None:
    """Register decoder architectures.

    Args:
        register: ``register(name, builder, *, description="")``; ``builder(spec, output_size, **options)``
            returns an ``nn.Module`` mapping features to ``(B, 3, *output_size)`` images, with a ``config()``
            method whose result (JSON) rebuilds it.
    """


@hookspec
def register_losses(register: Callable[..., None]) -> None:
    """Register loss terms for training (``--loss "mse + 0.01*feature"``).

    Args:
        register: ``register(name, factory, *, description="")``; ``factory(**options)`` returns a
            :class:`repinv.losses.LossTerm`, whose ``forward(reconstructions, images, features)`` gives the term's
            value for a batch. Its options come from ``--loss-opt NAME.KEY=VALUE`` and are stored in the run.
    """


@hookspec
def register_perturbations(register: Callable[..., None]) -> None:
    """Register feature perturbations for ``repinv analyze``.

    Args:
        register: ``register(name, fn, *, description="")``; ``fn(features, arg, *, generator)`` perturbs one
            sample's features (``arg`` is the text after ``NAME:``, or ``None``).
    """
