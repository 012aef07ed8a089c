"""Feature perturbations for ``repinv analyze``: the built-ins and applying any registered one by name.

A perturbation is addressed as ``NAME[:ARG]`` (split at the first colon) and looked up in the plugin registry, so
the built-ins below and a third party's are used the same way. Each one is ``fn(features, arg, *, generator)``
and perturbs the features of *one* image: a feature map ``(C, h, w)`` is treated as one flattened vector, as the
paper treats a layer's output (Dosovitskiy & Brox 2016, sections 4.3-4.5).

Built-ins (all but the masking ones keep the L2 norm of the features they are given, so a perturbation changes
the pattern of the features and not their energy):

* ``binarize``: each entry keeps its sign; every non-zero entry gets one common magnitude ``‖x‖₂ / √nnz``;
* ``dropout[:RATE]``: exactly ``round(RATE · n)`` entries, chosen at random, are zeroed (default RATE 0.5), and
  the rest are rescaled to the original norm;
* ``dropout+binarize[:RATE]``: dropout, then binarize;
* ``drop-least+binarize[:SHARE]``: the ``round(SHARE · nnz)`` non-zero entries of smallest magnitude are zeroed
  (default SHARE 0.5), then the rest are binarized to the original norm;
* ``keep-top:K`` / ``drop-top:K``: keep / zero the K largest values (signed, the FC8 study), no rescaling.

Randomness comes only from the generator; :func:`apply_perturbation` gives sample ``i`` of a data set its own
generator seeded with ``(seed, i)``, so results do not depend on batch size or batch composition.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from repinv.errors import InvalidOption, ShapeError
from repinv.options import Option, parse_value
from repinv.registry.hookspecs import hookimpl
from repinv.registry.manager import get_registry
from repinv.utils import keyed_generator

__all__ = ["BUILTINS", "binarize", "dropout", "dropout_binarize", "drop_least_binarize", "keep_top", "drop_top",
           "parse_perturbation", "perturbation_function", "sample_generator", "apply_perturbation"]


def _no_argument(name: str, arg: str | None) -> None:
    if arg is not None:
        raise InvalidOption(f"perturbation {name} takes no argument, got {name}:{arg}; write just {name}")


def _fraction(name: str, arg: str | None, default: float, what: str) -> float:
    """``arg`` as a number in [0, 1), or ``default`` when absent."""
    option = Option(what, default, float, f"the share of entries {name} zeroes", minimum=0, below=1)
    return float(option.default if arg is None else option.check(parse_value(arg), f"perturbation {name}"))


def _count(name: str, arg: str | None, size: int) -> int:
    """``arg`` as an integer K with 1 <= K <= size (required)."""
    if arg is None:
        raise InvalidOption(f"perturbation {name} needs K, the number of largest values, e.g. {name}:5")
    option = Option("K", 1, int, "how many of the largest values (at most the feature values per image)",
                    minimum=1, maximum=size)
    return int(option.check(parse_value(arg), f"perturbation {name}"))


def _binarized(flat: Tensor, norm: Tensor) -> Tensor:
    """Signs of ``flat`` times the one magnitude that gives L2 norm ``norm`` (zeros stay zero)."""
    signs = torch.sign(flat)
    nonzero = signs.abs().sum()
    if nonzero == 0:
        return torch.zeros_like(flat)
    return signs * (norm / nonzero.sqrt())


def _dropped(flat: Tensor, rate: float, generator: torch.Generator) -> Tensor:
    """``flat`` with ``round(rate · n)`` random entries zeroed and the rest rescaled to the original norm."""
    n = flat.numel()
    # The permutation is drawn on the CPU generator, so a sample gets the same mask on every device.
    zeroed = torch.randperm(n, generator=generator)[:round(rate * n)].to(flat.device)
    kept = flat.clone()
    kept[zeroed] = 0
    kept_norm = kept.norm()
    return kept * (flat.norm() / kept_norm) if kept_norm > 0 else kept


def binarize(features: Tensor, arg: str | None = None, *, generator: torch.Generator | None = None) -> Tensor:
    """Keep each entry's sign, with one common magnitude for all non-zero entries and the same L2 norm.

    Shape:
        features: one sample's features, any shape; returns the same shape.
    """
    _no_argument("binarize", arg)
    flat = features.flatten().float()
    return _binarized(flat, flat.norm()).view_as(features).to(features.dtype)


def dropout(features: Tensor, arg: str | None = None, *, generator: torch.Generator) -> Tensor:
    """Zero a random share ``RATE`` (default 0.5) of the entries and rescale the rest to the same L2 norm.

    Shape:
        features: one sample's features, any shape; returns the same shape.
    """
    rate = _fraction("dropout", arg, 0.5, "RATE")
    flat = features.flatten().float()
    return _dropped(flat, rate, generator).view_as(features).to(features.dtype)


def dropout_binarize(features: Tensor, arg: str | None = None, *, generator: torch.Generator) -> Tensor:
    """Dropout (``RATE``, default 0.5), then binarize; the L2 norm is unchanged.

    Shape:
        features: one sample's features, any shape; returns the same shape.
    """
    rate = _fraction("dropout+binarize", arg, 0.5, "RATE")
    flat = features.flatten().float()
    return _binarized(_dropped(flat, rate, generator), flat.norm()).view_as(features).to(features.dtype)


def drop_least_binarize(features: Tensor, arg: str | None = None, *,
                        generator: torch.Generator | None = None) -> Tensor:
    """Zero the share ``SHARE`` (default 0.5) of non-zero entries with the smallest magnitudes, then binarize to
    the original L2 norm.

    Shape:
        features: one sample's features, any shape; returns the same shape.
    """
    share = _fraction("drop-least+binarize", arg, 0.5, "SHARE")
    flat = features.flatten().float()
    nonzero = (flat != 0).nonzero().squeeze(1)
    # A stable sort: equal magnitudes are dropped in index order, so the result is deterministic.
    order = flat[nonzero].abs().sort(stable=True).indices
    kept = flat.clone()
    kept[nonzero[order[:round(share * nonzero.numel())]]] = 0
    return _binarized(kept, flat.norm()).view_as(features).to(features.dtype)


def _top_mask(flat: Tensor, k: int) -> Tensor:
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[flat.topk(k, sorted=False).indices] = True
    return mask


def keep_top(features: Tensor, arg: str | None = None, *, generator: torch.Generator | None = None) -> Tensor:
    """Keep the K largest values, zero all others.

    Shape:
        features: one sample's features, any shape; returns the same shape.
    """
    flat = features.flatten()
    return torch.where(_top_mask(flat, _count("keep-top", arg, flat.numel())), flat, 0).view_as(features)


def drop_top(features: Tensor, arg: str | None = None, *, generator: torch.Generator | None = None) -> Tensor:
    """Zero the K largest values, keep all others.

    Shape:
        features: one sample's features, any shape; returns the same shape.
    """
    flat = features.flatten()
    return torch.where(_top_mask(flat, _count("drop-top", arg, flat.numel())), 0, flat).view_as(features)


#: The built-in perturbations, ``name -> (fn, description)``; ``repinv.default_plugins`` registers them.
BUILTINS: dict[str, tuple[Callable[..., Tensor], str]] = {
    "binarize": (binarize, "keep signs, one common magnitude for all non-zero entries, same L2 norm"),
    "dropout": (dropout, "dropout[:RATE]: zero a random share RATE (default 0.5) of entries, rescale to the "
                         "same L2 norm"),
    "dropout+binarize": (dropout_binarize, "dropout+binarize[:RATE]: dropout, then binarize"),
    "drop-least+binarize": (drop_least_binarize, "drop-least+binarize[:SHARE]: zero the SHARE (default 0.5) "
                                                 "non-zero entries of smallest magnitude, then binarize"),
    "keep-top": (keep_top, "keep-top:K: keep the K largest values, zero the rest (the FC8 study)"),
    "drop-top": (drop_top, "drop-top:K: zero the K largest values, keep the rest"),
}


def parse_perturbation(text: str) -> tuple[str, str | None]:
    """Split ``NAME[:ARG]`` at the first colon.

    Returns:
        ``(name, arg)``; ``arg`` is ``None`` when there is no colon.

    Raises:
        InvalidOption: an empty name or an empty argument after the colon.
    """
    name, colon, arg = text.partition(":")
    if not name or (colon and not arg):
        raise InvalidOption(f"perturbation {text!r} is not NAME or NAME:ARG (e.g. binarize, dropout:0.3); "
                            "`repinv analyze --list` shows them")
    return name, (arg if colon else None)


def perturbation_function(text: str) -> Callable[..., Tensor]:
    """The registered function of ``NAME[:ARG]`` (the argument is not checked here; see :func:`apply_perturbation`).

    Raises:
        UnknownName: no plugin registered ``NAME`` (the message lists those that exist).
    """
    return get_registry().get("perturbation", parse_perturbation(text)[0]).obj


def sample_generator(seed: int, index: int) -> torch.Generator:
    """A CPU generator for data-set sample ``index``, independent of every other sample's."""
    return keyed_generator(seed, index)


def apply_perturbation(text: str, features: Tensor, *, seed: int = 0, first_index: int = 0) -> Tensor:
    """Apply the perturbation ``NAME[:ARG]`` to each sample of a batch independently.

    Args:
        text: ``NAME`` or ``NAME:ARG``, a registered perturbation (``repinv analyze --list``).
        features: a batch of features.
        seed: seeds the perturbation's randomness.
        first_index: the data-set index of the batch's first sample; sample ``i`` of the batch draws from
            ``sample_generator(seed, first_index + i)``, so results do not depend on how the data is batched.

    Returns:
        The perturbed batch, same shape, dtype and device.

    Shape:
        features: ``(B, *feature shape)``.

    Raises:
        UnknownName: an unregistered NAME.
        InvalidOption: a bad ARG (raised by the perturbation itself).
        ShapeError: the perturbation returned another shape.
    """
    name, arg = parse_perturbation(text)
    fn = perturbation_function(text)
    perturbed = []
    for i, sample in enumerate(features):
        result = fn(sample, arg, generator=sample_generator(seed, first_index + i))
        if not isinstance(result, Tensor) or result.shape != sample.shape:
            got = tuple(result.shape) if isinstance(result, Tensor) else type(result).__name__
            raise ShapeError(f"perturbation {name} returned {got} for features of shape {tuple(sample.shape)}; "
                             "a perturbation must keep the shape")
        perturbed.append(result.to(features.dtype))
    return torch.stack(perturbed) if perturbed else features.clone()


@hookimpl
def register_perturbations(register: Callable[..., None]) -> None:
    """The design's perturbations for ``repinv analyze`` (``binarize``, ``dropout``, …; see the module note)."""
    for name, (fn, description) in BUILTINS.items():
        register(name, fn, description=description)
