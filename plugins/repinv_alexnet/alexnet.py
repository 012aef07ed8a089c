"""AlexNet layers ``conv1`` … ``fc8`` as representations: torchvision's AlexNet, read with forward hooks.

The paper inverts the layers of CaffeNet (Caffe's AlexNet). This plugin uses **torchvision's AlexNet, which is
not CaffeNet**: it is the "one weird trick" variant (Krizhevsky 2014) with 64/192/384/256/256 convolution channels
instead of 96/256/384/384/256, no local response normalization, no channel groups, and a 224x224 input instead of
227x227. The layers keep the paper's definition of a layer's output, "after the last processing step of that layer":

========  =================  ==================================  ====================
layer     module             what                                features at 224x224
========  =================  ==================================  ====================
conv1     ``features.2``     convolution, ReLU, max-pooling      64x27x27
conv2     ``features.5``     convolution, ReLU, max-pooling      192x13x13
conv3     ``features.7``     convolution, ReLU                   384x13x13
conv4     ``features.9``     convolution, ReLU                   256x13x13
conv5     ``features.12``    convolution, ReLU, max-pooling      256x6x6
fc6       ``classifier.2``   fully connected, ReLU               4096
fc7       ``classifier.5``   fully connected, ReLU               4096
fc8       ``classifier.6``   fully connected (logits, no softmax) 1000
========  =================  ==================================  ====================

Any other module name of the model works too (``alexnet:features.6`` is conv3 before its ReLU). The model itself
is never modified: a forward hook on the layer's module takes its output and ends the forward pass there, so conv1
does no work beyond conv1. Images are resized to 224x224 (bilinear, antialiased) and normalized with ImageNet's
mean and standard deviation inside the representation, so the feature shape does not depend on the image size.

Weights (option ``weights``): ``imagenet`` (default) is torchvision's ``AlexNet_Weights.IMAGENET1K_V1``, taken from
torchvision's cache (downloaded there on first use); ``none`` is torchvision's random initialization, seeded by
option ``seed``; a path loads a local state dict in torchvision's key format (``.safetensors``, or ``.pth`` read with
``torch.load(weights_only=True)``). Weights are loaded on the first :meth:`~AlexNetLayer.forward` or
:meth:`~AlexNetLayer.state_dict` (or :meth:`~AlexNetLayer.load_weights`), never when the representation is only
created, so listing layers and their shapes (``repinv reps alexnet``) works offline; ``load_state_dict`` (a run's
``encoder.safetensors``) supplies the weights itself and cancels the pending load.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from repinv.errors import ShapeError, UnknownVariant, WeightsUnavailable
from repinv.options import Option, option_defaults, validate_options
from repinv.representations.base import FeatureSpec, Representation
from repinv.representations.networks import (
    DeferredWeights,
    capture,
    capture_many,
    describe_error,
    parse_weights,
    read_state_dict,
    same_network,
)
from repinv.utils import check_images

__all__ = ["AlexNetLayer", "LAYERS", "OPTIONS", "DEFAULTS", "INPUT_SIZE", "create_alexnet", "layer_names"]

#: The paper's layers and the torchvision modules whose outputs they are.
LAYERS: dict[str, str] = {
    "conv1": "features.2",
    "conv2": "features.5",
    "conv3": "features.7",
    "conv4": "features.9",
    "conv5": "features.12",
    "fc6": "classifier.2",
    "fc7": "classifier.5",
    "fc8": "classifier.6",
}
#: The options of ``alexnet``; :meth:`AlexNetLayer.config` returns all of them. ``weights`` is checked by
#: ``parse_weights``, which also makes a path absolute.
OPTIONS = (
    Option("weights", "imagenet", object, "imagenet (torchvision's), none (random, seeded) or a weights file"),
    Option("seed", 0, int, "seeds the random initialization"),
)
#: Options and their defaults.
DEFAULTS: dict[str, Any] = option_defaults(OPTIONS)
#: The network's input size ``(H, W)``: torchvision's AlexNet weights were trained on 224x224 crops.
INPUT_SIZE = (224, 224)
# ImageNet statistics, those of torchvision's AlexNet_Weights.IMAGENET1K_V1.transforms().
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: File suffixes taken as a local weights file (anything else must be ``imagenet`` or ``none``).


@functools.cache
def _meta_model() -> nn.Module:
    """A weightless AlexNet on the meta device: module names and shapes without memory or downloads."""
    with torch.device("meta"):
        model: nn.Module = torchvision.models.alexnet().eval()  # torchvision is untyped to mypy: Any
    return model


@functools.cache
def layer_names() -> tuple[str, ...]:
    """Every module name of torchvision's AlexNet (``features``, ``features.0``, …, ``classifier.6``)."""
    return tuple(name for name, _ in _meta_model().named_modules() if name)


@functools.cache
def _layer_shape(module_name: str) -> tuple[int, ...]:
    """Feature shape (no batch dimension) of a module's output at the input size, by a dry run on the meta device."""
    model = _meta_model()
    output = capture(model, model.get_submodule(module_name), torch.zeros(1, 3, *INPUT_SIZE, device="meta"))
    return tuple(_as_features(output, module_name, 1).shape[1:])


def _as_features(output: object, what: str, batch: int) -> Tensor:
    """Check that a module's output is a feature map ``(B, C, h, w)`` or vector ``(B, D)``."""
    if not isinstance(output, Tensor) or output.dim() not in (2, 4) or output.shape[0] != batch:
        described = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ShapeError(f"alexnet module {what} gives {described}, not a feature map (B, C, h, w) or vector (B, D)")
    return output


def _imagenet_state_dict() -> dict[str, Tensor]:
    """torchvision's ImageNet weights for AlexNet, through its weights API and cache (``$TORCH_HOME``)."""
    weights = torchvision.models.AlexNet_Weights.IMAGENET1K_V1
    try:
        state: dict[str, Tensor] = weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except Exception as error:  # no network, a proxy, a truncated or corrupt download: all mean "not available"
        reason = describe_error(error)
        raise WeightsUnavailable(
            f"AlexNet's ImageNet weights (torchvision AlexNet_Weights.IMAGENET1K_V1) could not be obtained "
            f"({type(error).__name__}: {reason}); use --rep-opt weights=none for random weights, or "
            f"--rep-opt weights=/path/to/alexnet.safetensors (or .pth) for a local copy") from None
    return state


class AlexNetLayer(DeferredWeights, Representation):
    """One layer of torchvision's AlexNet, with the paper's definition of a layer's output.

    Args:
        layer: a paper layer (``conv1`` … ``conv5``, ``fc6`` … ``fc8``) or a module name (``features.7``).
        weights: ``imagenet`` (torchvision's ImageNet weights), ``none`` (random, seeded by ``seed``) or the path of
            a ``.safetensors`` / ``.pth`` state dict in torchvision's key format. Loaded on first use.
        seed: seeds the random initialization; the same seed gives the same weights.

    Shape:
        - Input: ``(B, 3, H, W)`` RGB in [0, 1], any size; resized to 224x224 and normalized inside.
        - Output: ``(B, C, h, w)`` for a convolutional layer, ``(B, D)`` for a fully connected one; see
          :data:`LAYERS` and :meth:`spec`.

    Example:
        >>> AlexNetLayer("conv2", weights="none")(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 192, 13, 13])
    """

    differentiable = True
    per_image = False
    mean: Tensor  # buffers, registered in __init__: (1, 3, 1, 1)
    std: Tensor

    def __init__(self, layer: str, weights: Any = "imagenet", seed: int = 0) -> None:
        super().__init__()
        if layer in LAYERS:
            self.layer, self.module_name = layer, LAYERS[layer]
        elif layer in layer_names():
            self.layer, self.module_name = layer, layer
        else:
            raise UnknownVariant(layer, available=[*LAYERS, *layer_names()])
        seed = validate_options("alexnet", {"weights": weights, "seed": seed}, OPTIONS)["seed"]
        self.name = f"alexnet:{layer}"
        self.weights, self.seed = parse_weights(weights, "alexnet", "imagenet"), seed
        if self.weights == "none":
            # torchvision's own initialization, seeded without touching the global random state.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.model = torchvision.models.alexnet()
        else:
            # Weights to be loaded later: skip the random initialization (0.4 s, wasted) and hold zeros until then.
            with torch.device("meta"):
                model = torchvision.models.alexnet()
            self.model = model.to_empty(device="cpu")
            with torch.no_grad():
                for tensor in self.model.state_dict().values():
                    tensor.zero_()
        # Channels-last weights: 1.26x the images/s of the default layout for conv5 on a 2-core CPU, features equal to
        # 5e-7 (docs/benchmarks.md, bench/encoders.py); CUDA's fast layout too.
        self.model = self.model.to(memory_format=torch.channels_last)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.defer_weights(None if self.weights == "none" else self.weights,
                           rebuildable=self.weights == "imagenet")
        self.eval()  # a feature extractor: dropout and batch statistics only when someone trains it

    def fetch_weights(self, source: str) -> tuple[dict[str, Tensor], str]:
        """torchvision's ImageNet weights (``imagenet``) or a local weights file."""
        if source == "imagenet":
            return _imagenet_state_dict(), "torchvision's AlexNet_Weights.IMAGENET1K_V1"
        return read_state_dict(source, "alexnet weights file"), f"alexnet weights file {source!r}"

    def forward(self, images: Tensor) -> Tensor:
        """Compute the layer's output.

        Args:
            images: ``(B, 3, H, W)`` RGB images, float in [0, 1].

        Returns:
            ``(B, C, h, w)`` or ``(B, D)`` features, differentiable with respect to ``images``.
        """
        check_images(images)
        self.load_weights()
        output = capture(self.model, self.model.get_submodule(self.module_name), self._prepare(images))
        return _as_features(output, self.module_name, images.shape[0])

    def _prepare(self, images: Tensor) -> Tensor:
        """Resize to 224x224 and normalize with ImageNet's statistics."""
        if tuple(images.shape[-2:]) != INPUT_SIZE:
            images = F.interpolate(images, size=INPUT_SIZE, mode="bilinear", antialias=True, align_corners=False)
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def forward_together(self, images: Tensor, others: Sequence[Representation]) -> list[Tensor] | None:
        """The features of this layer and of other AlexNet layers with the same weights, from one forward pass.

        Shared when every one of ``others`` is an :class:`AlexNetLayer` with the same options (weights, seed) and an
        equal network, parameter by parameter; the images are prepared once and each layer's output taken from the
        same pass (:func:`capture_many`), so every feature tensor is exactly what the layer's own :meth:`forward`
        gives.

        Returns:
            The features of ``self`` and ``others``, in order; ``None`` when they cannot share the pass.
        """
        group: list[AlexNetLayer] = [self]
        for other in others:
            if not isinstance(other, AlexNetLayer) or other.config() != self.config():
                return None
            group.append(other)
        check_images(images)
        for layer in group:
            layer.load_weights()
        if not all(same_network(self.model, layer.model) for layer in group[1:]):
            return None
        outputs = capture_many(self.model, [self.model.get_submodule(layer.module_name) for layer in group],
                               self._prepare(images))
        return [_as_features(output, layer.module_name, images.shape[0]) for layer, output in zip(group, outputs)]

    def spec(self, image_size: tuple[int, int]) -> FeatureSpec:
        """The feature shape; the same for every image size (images are resized to 224x224). Loads no weights."""
        if len(image_size) != 2 or min(int(s) for s in image_size) < 1:
            raise ShapeError(f"image_size must be (H, W) with positive sides, got {tuple(image_size)}")
        return FeatureSpec(_layer_shape(self.module_name))

    def config(self) -> dict[str, Any]:
        """All options, JSON-able: ``create_representation(self.name, **config)`` rebuilds this representation."""
        return {"weights": self.weights, "seed": self.seed}

    def extra_repr(self) -> str:
        """Layer, module and weights, for ``repr``."""
        return f"layer={self.layer!r}, module={self.module_name!r}, weights={self.weights!r}, seed={self.seed}"


def create_alexnet(variant: str | None = None, **options: Any) -> AlexNetLayer:
    """The ``alexnet`` factory: validate the options and build :class:`AlexNetLayer`.

    Args:
        variant: a layer (``conv1`` … ``fc8``) or a module name (``features.7``); required.
        **options: ``weights`` (``imagenet``, ``none`` or a path; default ``imagenet``) and ``seed`` (int, 0).

    Returns:
        The representation; no weights are loaded until it is used.

    Raises:
        UnknownVariant: no layer, or an unknown one (the message lists the layers, nearest first).
        InvalidOption: an unknown option, or a bad value.
    """
    if variant is None:
        raise UnknownVariant(None, available=list(LAYERS))
    return AlexNetLayer(variant, **validate_options("alexnet", options, OPTIONS))
