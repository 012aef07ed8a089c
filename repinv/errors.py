"""Typed errors of repinv.

Every error a user can cause derives from :class:`RepinvError`; the CLI turns these into one clear line and a
non-zero exit. Messages name the problem and what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = [
    "RepinvError",
    "UnknownRepresentation",
    "UnknownVariant",
    "UnknownName",
    "InvalidOption",
    "ShapeError",
    "DataError",
    "CheckpointError",
    "NotDifferentiable",
    "WeightsUnavailable",
    "CacheError",
    "TrainingFailed",
    "nearest_first",
]


class RepinvError(Exception):
    """Base class of every error repinv reports to a user."""


def nearest_first(name: str | None, candidates: Iterable[str]) -> list[str]:
    """Order ``candidates`` so that the names closest to ``name`` come first.

    Args:
        name: the name the user asked for (``None`` keeps the original order).
        candidates: the valid names.

    Returns:
        The candidates, closest matches first, the rest in their original order.
    """
    candidates = list(candidates)
    if not name or not candidates:
        return candidates
    close = difflib.get_close_matches(name, candidates, n=len(candidates), cutoff=0.5)
    prefixed = [c for c in candidates if c not in close and (c.startswith(name) or name.startswith(c))]
    rest = [c for c in candidates if c not in close and c not in prefixed]
    return close + prefixed + rest


def _listing(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


class UnknownName(RepinvError, KeyError):
    """A name (representation family, decoder, perturbation) that nothing registered."""

    def __init__(self, kind: str, name: str, available: Iterable[str], hint: str = "") -> None:
        self.kind, self.name = kind, name
        self.available = nearest_first(name, sorted(available))
        message = f"unknown {kind} {name!r}; available: {_listing(self.available) or '(none registered)'}"
        super().__init__(message + (f" ({hint})" if hint else ""))

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class UnknownRepresentation(UnknownName):
    """A representation family that no plugin registered."""

    def __init__(self, name: str, available: Iterable[str]) -> None:
        super().__init__("representation", name, available, hint="`repinv reps` lists them")


class UnknownVariant(RepinvError):
    """Raised by a representation factory for a variant (layer) it does not know.

    Args:
        variant: the variant asked for.
        available: the variants that exist; the core orders them nearest first in the message.
    """

    def __init__(self, variant: str | None, available: Iterable[str] = ()) -> None:
        self.variant = variant
        self.available = nearest_first(variant, list(available))
        self.family: str | None = None
        super().__init__(self._message())

    def with_family(self, family: str) -> UnknownVariant:
        """Return the same error with the family named in its message."""
        self.family = family
        self.args = (self._message(),)
        return self

    def _message(self) -> str:
        family = f" for {self.family}" if self.family else ""
        if self.variant and not self.available:
            return f"unknown variant {self.variant!r}{family}: it has no variants; give the name without ':'"
        what = f"unknown layer {self.variant!r}" if self.variant else "a layer is required"
        return f"{what}{family}; available: {_listing(self.available) or '(none)'}"


class InvalidOption(RepinvError, ValueError):
    """An option (``--rep-opt``, ``--decoder-opt``, a config value) that is unknown or has a bad value."""


class ShapeError(RepinvError, ValueError):
    """A tensor whose shape is not what an interface expects."""


class DataError(RepinvError):
    """A data source that is missing, empty or unreadable."""


class CheckpointError(RepinvError):
    """A run directory that is missing, incomplete or does not match what it is loaded with."""


class NotDifferentiable(RepinvError):
    """A gradient-based method was asked to use a representation that is not differentiable."""


class WeightsUnavailable(RepinvError):
    """Pretrained weights could not be obtained (typically: no network); the message names alternatives."""


class CacheError(RepinvError):
    """A feature cache that is missing, unfinished, or made with other settings."""


class TrainingFailed(RepinvError):
    """Training stopped because it went wrong (a loss that is not finite, an adversarial game lost); the run keeps
    its last checkpoint, written before the failure."""
