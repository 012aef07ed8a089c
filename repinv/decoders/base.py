"""The decoder module and the sizing rule that every built-in decoder shares.

:class:`Decoder` wraps a decoder's layers with what repinv needs to rebuild and use it (its feature spec, output
size and resolved options); :func:`up_steps` and :func:`level_channels` size every built-in architecture from the
feature shape, the output size and ``width`` (docs/architecture.md states the rule in full).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from repinv.errors import InvalidOption, ShapeError
from repinv.options import Option, size_pair, validate_options
from repinv.representations.base import FeatureSpec, as_feature_spec
from repinv.utils import check_shape

__all__ = ["Decoder", "up_steps", "level_channels", "halved", "init_layer", "automatic", "channel_cap",
           "map_decoder_arguments", "WIDTH", "MAX_CHANNELS_OPTION", "SLOPE", "OUTPUT_BIAS"]

SLOPE = 0.2  # leaky ReLU slope, as in the paper
BASE_CHANNELS = 16  # a layer k up-convolutions before the output has 16 * 2**k channels (Table 1: 32, 64, 128, 256)
MAX_CHANNELS = 256  # ... capped here (Table 1's widest up-convolution); both scale with ``width``
OUTPUT_BIAS = 0.5  # the untrained decoder predicts mid-grey, the centre of the [0, 1] image range


# ---------------------------------------------------------------------------------------------------------- rule


def up_steps(size: Sequence[int], output_size: Sequence[int]) -> int:
    """The number of stride-2 up-convolutions from a map of ``size`` towards ``output_size``.

    Per axis, the number ``u >= 0`` whose ``size * 2**u`` is nearest to the output size on a log scale (sizes
    are integers, so there is never a tie); the decoder uses the larger over the two axes, so no axis is
    enlarged at the end by more than a factor of sqrt(2).

    Args:
        size: ``(h, w)`` of the map the up-convolutions start from.
        output_size: ``(H, W)`` of the image.

    Returns:
        The number of up-convolutions.
    """
    steps = 0
    for start, target in zip(size, output_size):
        u = 0
        while start << (u + 1) <= target:
            u += 1
        # log-nearest: round up when target / (start * 2**u) >= sqrt(2), compared exactly in integers
        if target * target >= (start * start) << (2 * u + 1):
            u += 1
        steps = max(steps, u)
    return steps


def halved(size: Sequence[int], times: int) -> tuple[int, int]:
    """The map size after ``times`` stride-2 convolutions (kernel 5, padding 2): ceil-halving per axis."""
    h, w = int(size[0]), int(size[1])
    for _ in range(times):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


def level_channels(level: int, width: float = 1.0, max_channels: int | None = None) -> int:
    """Channels of a layer whose output lies ``level`` up-convolutions before the decoder's output.

    Args:
        level: up-convolutions still to come after the layer; levels below 1 count as 1.
        width: the channel multiplier.
        max_channels: the cap; ``None`` means ``round(256 * width)``.

    Returns:
        ``min(max_channels, round(width * 16 * 2**level))``, at least 1.
    """
    cap = max(1, round(MAX_CHANNELS * width)) if max_channels is None else max_channels
    return max(1, min(cap, round(width * BASE_CHANNELS * (1 << max(1, level)))))


# ---------------------------------------------------------------------------------------------------------- module


class Decoder(nn.Module):
    """A feature-to-image network built by :func:`conv_decoder` or :func:`fc_decoder`.

    Args:
        name: the registered decoder name.
        spec: the feature shape it takes.
        output_size: ``(H, W)`` of the images it predicts.
        options: the resolved options (what :meth:`config` stores).
        layers: the layers in order; the last one predicts RGB.
        final_size: ``(h, w)`` the layers predict; resized bilinearly to ``output_size`` when different.
        fully_convolutional: only convolutions, so a larger map gives a larger image (:meth:`forward_any_size`).

    Attributes:
        name: the registered decoder name (``"conv"`` or ``"fc"``).
        spec: the feature shape it takes.
        output_size: ``(H, W)`` of the images it predicts.
        options: every option, automatic ones resolved, so that :meth:`config` rebuilds the same network.
        layers: the layers, named like the paper's tables (``fc1``, ``conv1``, ``contract1``, ``upconv1``, ...).
        fully_convolutional: whether :meth:`forward_any_size` works.
    """

    def __init__(self, name: str, spec: FeatureSpec, output_size: tuple[int, int], options: dict[str, Any],
                 layers: OrderedDict[str, nn.Module], final_size: tuple[int, int],
                 fully_convolutional: bool = False) -> None:
        super().__init__()
        self.name = name
        self.spec = spec
        self.output_size = output_size
        self.options = options
        self.layers = nn.Sequential(layers)
        self.fully_convolutional = fully_convolutional
        self.final_size = final_size
        self._resize = final_size != output_size
        # shrinking without antialiasing would alias; growing needs none
        self._antialias = final_size[0] > output_size[0] or final_size[1] > output_size[1]

    def forward(self, features: Tensor) -> Tensor:
        """Predict images from features.

        Args:
            features: a batch of features of the decoder's spec.

        Returns:
            Images, the last layer linear (neither activated nor clamped).

        Raises:
            ShapeError: features of another shape, or not floating point.

        Shape:
            features: ``(B, *spec.shape)``; returns ``(B, 3, *output_size)``.
        """
        check_shape(features, ("B", *self.spec.shape), what=f"features for the {self.name} decoder")
        if not features.is_floating_point():
            raise ShapeError(f"features for the {self.name} decoder must be floating point, got {features.dtype}")
        images: Tensor = self.layers(features)
        if self._resize:
            images = F.interpolate(images, size=self.output_size, mode="bilinear", align_corners=False,
                                   antialias=self._antialias)
        return images

    def forward_any_size(self, features: Tensor) -> Tensor:
        """Predict images from a feature map of any size: the layers alone, without the final resize, so a map of
        ``(h, w)`` cells gives images of about ``(h, w)`` times the scale the decoder was trained at.

        Raises:
            ShapeError: a decoder with fully connected layers, or features with other channels.

        Shape:
            features: ``(B, C, h, w)``, any ``h, w``; returns ``(B, 3, h·s, w·s)``.
        """
        if not self.fully_convolutional:
            raise ShapeError(f"the {self.name} decoder has fully connected layers: it takes {self.spec} features "
                             "only (use --size training)")
        check_shape(features, ("B", self.spec.shape[0], "h", "w"), what=f"features for the {self.name} decoder")
        images: Tensor = self.layers(features)
        return images

    def config(self) -> dict[str, Any]:
        """JSON-able description that :func:`decoder_from_config` rebuilds this architecture from.

        Returns:
            ``{"name": ..., "spec": [C, h, w] or [D], "output_size": [H, W], "options": {...}}``.
        """
        return {"name": self.name, "spec": list(self.spec.shape), "output_size": list(self.output_size),
                "options": dict(self.options)}

    def extra_repr(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self.options.items())
        return f"name={self.name!r}, spec={self.spec}, output_size={self.output_size}, {options}"


def init_layer(layer: nn.Module, gain: float, bias: float = 0.0) -> None:
    """Kaiming-normal initialization with the fan-in each output value really sees.

    A stride-2 transposed convolution sums over ``in_channels * k**2 / 4`` inputs per output on average, not
    ``in_channels * k**2``; using the true fan-in keeps activations at unit scale through the up-convolutions.
    """
    fan_in: float
    if isinstance(layer, nn.Linear):
        fan_in = layer.in_features
    else:
        assert isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))
        fan_in = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
        if isinstance(layer, nn.ConvTranspose2d):
            fan_in = fan_in / (layer.stride[0] * layer.stride[1])
    nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(fan_in))
    if layer.bias is not None:
        nn.init.constant_(layer.bias, bias)


# ---------------------------------------------------------------------------------------------------------- options


#: The ``width`` option of every built-in decoder.
WIDTH = Option("width", 1.0, float, "scales every channel count (1.0: the paper's)", above=0)
#: The ``max_channels`` option of every built-in decoder ("auto" or null: ``round(256 * width)``).
MAX_CHANNELS_OPTION = Option("max_channels", None, int, "the most channels of a layer ('auto': round(256 * width))",
                             minimum=1, optional=True, keywords=("auto",))


def automatic(value: int | str | None) -> int | None:
    """An option's number, or ``None`` where it is left to the sizing rule (``"auto"`` or null)."""
    return None if value is None or value == "auto" else int(value)


def channel_cap(width: float, max_channels: int | str | None) -> int:
    """The most channels of any layer: the ``max_channels`` option, or ``round(256 * width)`` where it is automatic."""
    cap = automatic(max_channels)
    return max(1, round(MAX_CHANNELS * width)) if cap is None else cap


def map_decoder_arguments(name: str, spec: FeatureSpec, output_size: tuple[int, int], options: dict[str, Any],
                          schema: Sequence[Option]) -> tuple[FeatureSpec, tuple[int, int], dict[str, Any]]:
    """A feature-map decoder's arguments, checked: the spec (a map), the output size and the validated options.

    Raises:
        InvalidOption: a vector spec (naming the fc decoder), a bad size, an unknown option or a bad value.
    """
    spec, output = as_feature_spec(spec), size_pair(output_size, "output_size")
    if spec.kind != "map":
        raise InvalidOption(f"the {name} decoder needs a feature map (C, h, w), got a vector of shape {spec}; "
                            "use the fc decoder (decoder='fc', or leave the decoder unset to choose automatically)")
    return spec, output, validate_options(f"{name} decoder", options, schema)
