"""The representation interface: what every feature extractor repinv inverts looks like.

A representation maps a batch of RGB images in [0, 1] to a feature map ``(B, C, h, w)`` or a feature vector
``(B, D)``. Grayscale conversion, resizing and normalization happen inside it, so every representation takes the
same input. Representations are created by name through the plugin registry
(:func:`create_representation`), never imported directly by the core.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

import torch
from torch import Tensor, nn

from repinv.errors import ShapeError
from repinv.utils import check_images

__all__ = [
    "FeatureSpec",
    "Representation",
    "rgb_to_gray",
    "split_name",
    "as_feature_spec",
    "features_together",
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
        if len(self.shape) not in (1, 3) or any(int(s) != s or int(s) <= 0 for s in self.shape):
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

    @property
    def weights_from_options(self) -> bool:
        """Whether :meth:`config` alone rebuilds this representation's weights and buffers (fixed filters, a named
        pretrained source). When ``False`` (random initialization, a local weights file), a run stores them in its
        directory, so loading the run needs neither the file nor the network."""
        return True

    def load_weights(self) -> Self:
        """Fetch what the representation loads on first use (e.g. pretrained weights) now, so that a failed
        download comes before any work is done. The base class loads nothing.

        Returns:
            ``self``.
        """
        return self

    def forward_together(self, images: Tensor, others: Sequence[Representation]) -> list[Tensor] | None:
        """The features of ``self`` and ``others`` on the same images, sharing work where possible (e.g. several
        layers of one network from a single forward pass), or ``None`` when this representation cannot share it.

        An override must give exactly what each representation's own ``forward`` gives. The base class shares
        nothing; use :func:`features_together`, which falls back to calling each representation.

        Args:
            images: ``(B, 3, H, W)`` RGB images, float in [0, 1].
            others: the other representations.

        Returns:
            ``[self(images), *(other(images) for other in others)]``, computed together; or ``None``.
        """
        return None

    def extra_repr(self) -> str:
        return f"name={self.name!r}, differentiable={self.differentiable}, per_image={self.per_image}"


def features_together(representations: Sequence[Representation], images: Tensor) -> list[Tensor]:
    """The features of every representation on ``images``, in order: computed together when the first one can
    (:meth:`Representation.forward_together`), else by calling each representation in turn.

    Args:
        representations: the representations.
        images: ``(B, 3, H, W)`` RGB images, float in [0, 1].

    Returns:
        One feature tensor per representation, each what ``representation(images)`` gives.
    """
    representations = list(representations)
    if len(representations) > 1:
        shared = representations[0].forward_together(images, representations[1:])
        if shared is not None:
            if len(shared) != len(representations):
                raise ShapeError(f"{representations[0].name}.forward_together gave {len(shared)} feature tensors "
                                 f"for {len(representations)} representations")
            return shared
    return [representation(images) for representation in representations]


def split_name(name: str) -> tuple[str, str | None]:
    """Split ``family[:variant]`` at the first colon: ``"timm:resnet18:layer3"`` → ``("timm", "resnet18:layer3")``."""
    family, _, variant = name.partition(":")
    return family, (variant or None)  # "hog:" is hog: an empty variant names none


def as_feature_spec(spec: FeatureSpec | Sequence[int]) -> FeatureSpec:
    """``spec`` as a :class:`FeatureSpec` (a shape tuple or list, e.g. from JSON, is converted)."""
    return spec if isinstance(spec, FeatureSpec) else FeatureSpec(tuple(spec))
