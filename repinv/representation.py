"""The representation interface: what every feature extractor repinv inverts looks like.

A representation maps a batch of RGB images in [0, 1] to a feature map ``(B, C, h, w)`` or a feature vector
``(B, D)``. Grayscale conversion, resizing and normalization happen inside it, so every representation takes the
same input. Representations are created by name through the plugin registry
(:func:`create_representation`), never imported directly by the core.
"""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .errors import InvalidOption, ShapeError, UnknownRepresentation, UnknownVariant

__all__ = [
    "FeatureSpec",
    "Representation",
    "check_shape",
    "check_images",
    "rgb_to_gray",
    "split_name",
    "with_defaults",
    "create_representation",
    "list_representations",
]

#: ITU-R BT.601 luma weights (R, G, B), the grayscale conversion the paper's shallow features use.
BT601 = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class FeatureSpec:
    """What a representation outputs for one image size.

    Attributes:
        shape: ``(C, h, w)`` for a feature map, ``(D,)`` for a feature vector; no batch dimension.
    """

    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.shape) not in (1, 3) or any(int(s) <= 0 for s in self.shape):
            raise ShapeError(f"a feature shape is (C, h, w) or (D,) with positive sizes, got {self.shape}")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @property
    def kind(self) -> Literal["map", "vector"]:
        """``"map"`` for ``(C, h, w)``, ``"vector"`` for ``(D,)``."""
        return "map" if len(self.shape) == 3 else "vector"

    @property
    def numel(self) -> int:
        """Number of feature values per image."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def __str__(self) -> str:
        return "x".join(str(s) for s in self.shape)


def check_shape(tensor: Tensor, pattern: Sequence[int | str], what: str = "tensor") -> dict[str, int]:
    """Check a tensor's shape against a pattern and bind its named dimensions.

    Args:
        tensor: the tensor to check.
        pattern: one entry per dimension: an ``int`` must match exactly, a ``str`` names a free dimension
            (the same name twice must have the same size); ``"*"`` matches any size without binding.
        what: how the tensor is named in the error message.

    Returns:
        The sizes bound to the named dimensions.

    Raises:
        ShapeError: when the number of dimensions or a fixed size differs.
    """
    shape = tuple(tensor.shape)
    expected = "(" + ", ".join(str(p) for p in pattern) + ")"
    if len(shape) != len(pattern):
        raise ShapeError(f"{what} must have shape {expected}, got {shape}")
    bound: dict[str, int] = {}
    for size, want in zip(shape, pattern):
        if isinstance(want, int):
            if size != want:
                raise ShapeError(f"{what} must have shape {expected}, got {shape}")
        elif want != "*":
            if bound.setdefault(want, size) != size:
                raise ShapeError(f"{what} must have shape {expected}, got {shape}")
    return bound


def check_images(images: Tensor) -> tuple[int, int]:
    """Check that ``images`` is a batch of RGB float images ``(B, 3, H, W)``; return ``(H, W)``."""
    dims = check_shape(images, ("B", 3, "H", "W"), what="images")
    if not images.is_floating_point():
        raise ShapeError(f"images must be floating point in [0, 1], got {images.dtype}")
    return dims["H"], dims["W"]


def rgb_to_gray(images: Tensor) -> Tensor:
    """Convert RGB images to ITU-R BT.601 luma.

    Args:
        images: ``(B, 3, H, W)`` RGB images.

    Returns:
        ``(B, 1, H, W)`` grayscale images, differentiable.
    """
    check_images(images)
    red, green, blue = BT601
    # Accumulated plane by plane: a (B, 3, H, W) product followed by a channel sum is 8x slower on a CPU.
    gray = images[:, 0:1] * red
    gray.add_(images[:, 1:2], alpha=green)
    return gray.add_(images[:, 2:3], alpha=blue)


class Representation(nn.Module, ABC):
    """Base class of every representation.

    Subclasses set :attr:`name`, :attr:`differentiable` and :attr:`per_image`, implement :meth:`forward` and
    :meth:`config`, and may override :meth:`spec` with a closed form (the default runs the representation once on
    a black image of the requested size).

    Attributes:
        name: canonical name, e.g. ``"hog"``, ``"alexnet:fc8"``, ``"timm:resnet18:layer3"``.
        differentiable: whether gradients flow from the features back to the pixels.
        per_image: ``True`` when the work is serial CPU code per image (computed in data-loader workers).
    """

    name: str = ""
    differentiable: bool = True
    per_image: bool = False

    @abstractmethod
    def forward(self, images: Tensor) -> Tensor:
        """Compute features.

        Args:
            images: ``(B, 3, H, W)`` RGB images, float in [0, 1].

        Returns:
            ``(B, C, h, w)`` feature maps or ``(B, D)`` feature vectors.
        """

    @torch.no_grad()
    def spec(self, image_size: tuple[int, int]) -> FeatureSpec:
        """The feature shape for images of ``image_size`` = ``(H, W)``."""
        param = next(iter(self.parameters()), None)
        buffer = next(iter(self.buffers()), None)
        reference = param if param is not None else buffer
        device = reference.device if reference is not None else torch.device("cpu")
        probe = torch.zeros(1, 3, int(image_size[0]), int(image_size[1]), device=device)
        return FeatureSpec(tuple(self(probe).shape[1:]))

    def config(self) -> dict[str, Any]:
        """JSON-able options that rebuild this representation with :func:`create_representation`."""
        return {}

    def extra_repr(self) -> str:
        return f"name={self.name!r}, differentiable={self.differentiable}, per_image={self.per_image}"


def split_name(name: str) -> tuple[str, str | None]:
    """Split ``family[:variant]`` at the first colon: ``"timm:resnet18:layer3"`` → ``("timm", "resnet18:layer3")``."""
    family, sep, variant = name.partition(":")
    return family, (variant if sep else None)


def with_defaults(family: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A factory's options over its ``defaults``, refusing names it does not know.

    Args:
        family: the representation family, for the message.
        options: the options given.
        defaults: every option the factory takes, with its default.

    Returns:
        ``defaults`` updated with ``options``.

    Raises:
        InvalidOption: an option not in ``defaults`` (the message lists the valid ones).
    """
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise InvalidOption(f"unknown {family} option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                            f"valid options: {', '.join(defaults)}")
    return {**defaults, **options}


def create_representation(name: str, **options: Any) -> Representation:
    """Create a representation by name.

    Args:
        name: ``family[:variant]``, e.g. ``"hog"`` or ``"alexnet:fc8"``.
        **options: options the family's factory validates (e.g. ``cell_size=8``).

    Returns:
        The representation, in evaluation mode.

    Raises:
        UnknownRepresentation: no plugin registered ``family``.
        UnknownVariant: the family does not know ``variant`` (the message lists what exists).
        InvalidOption: an option is unknown or has a bad value.
    """
    from .plugins import get_registry

    family, variant = split_name(name)
    entry = get_registry().representations.get(family)
    if entry is None:
        raise UnknownRepresentation(family, get_registry().representations)
    try:
        representation = entry.factory(variant, **options)
    except UnknownVariant as error:
        raise error.with_family(family) from None
    if not isinstance(representation, Representation):
        raise TypeError(f"the factory of {family!r} returned {type(representation).__name__}, not a Representation")
    return representation.eval()


def list_representations(pattern: str = "*") -> list[str]:
    """Names of registered representations matching a glob pattern.

    Families with listed variants contribute ``family:variant`` names, others their family name.

    Args:
        pattern: an ``fnmatch`` pattern, e.g. ``"alex*"``; a name without wildcards lists what starts with it, so
            a family name lists its variants and ``timm:resnet18`` that model's layers.

    Returns:
        The matching names: families in alphabetical order, each family's variants in the order it lists them.
    """
    from .plugins import get_registry

    families = get_registry().representations
    asked_family, asked_variant = split_name(pattern)
    names: list[str] = []
    for family, entry in sorted(families.items()):
        variants = entry.list_variants(asked_variant if family == asked_family else None)
        names.extend(f"{family}:{v}" for v in variants) if variants else names.append(family)
    if asked_family in families and not any(c in pattern for c in "*?["):
        pattern = f"{pattern}*"
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]
