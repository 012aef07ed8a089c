"""Decoders: the up-convolutional networks that map features back to images, and the rule that sizes them.

Two architectures follow Dosovitskiy & Brox (CVPR 2016): ``fc`` for feature vectors (the paper's Table 1: three
fully connected layers, a reshape to 4x4, stride-2 up-convolutions) and ``conv`` for feature maps (convolutions at
the input resolution, an optional contracting part, stride-2 up-convolutions). Both are sized by one
deterministic rule from the feature shape, the output size and ``width``; docs/architecture.md states it in full.

Decoders are built by name through the plugin registry (:func:`build_decoder`), so a third party's decoder is used
exactly like these, and rebuilt from their JSON :meth:`Decoder.config` with :func:`decoder_from_config`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from repinv.errors import InvalidOption, ShapeError
from repinv.options import Option, size_pair, validate_options
from repinv.registry.hookspecs import hookimpl
from repinv.representations.base import FeatureSpec, as_feature_spec
from repinv.utils import check_shape

__all__ = [
    "Decoder",
    "conv_decoder",
    "fc_decoder",
    "up_steps",
    "auto_contract",
    "level_channels",
    "CONV_OPTIONS",
    "FC_OPTIONS",
]

KERNEL = 5  # every convolution and up-convolution is 5x5, as in the paper
SLOPE = 0.2  # leaky ReLU slope, as in the paper
BASE_CHANNELS = 16  # a layer k up-convolutions before the output has 16 * 2**k channels (Table 1: 32, 64, 128, 256)
MAX_CHANNELS = 256  # ... capped here (Table 1's widest up-convolution); both scale with ``width``
FC_UNITS = 4096  # Table 1's fully connected layers
FC_START = 4  # the fc decoder reshapes to a 4x4 map
DEFAULT_CONVS = 3  # stride-1 convolutions at the input resolution of the conv decoder
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


def _halved(size: Sequence[int], times: int) -> tuple[int, int]:
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


def auto_contract(shape: Sequence[int], output_size: Sequence[int]) -> int:
    """The default number of contracting stride-2 convolutions of the conv decoder.

    The largest ``c`` such that each of the first ``c`` contractions leaves a map that, at width 1, still holds at
    least as many values as the input (``h_c * w_c * channels >= C * h * w``), contracting only maps whose sides
    are both at least 2. So
    the decoder aggregates over large regions (the paper contracts for HOG and LBP, which discard absolute
    brightness) without a bottleneck that would lose what the features hold (deep layers are not contracted).
    The result depends only on the feature shape and the output size, never on ``width``.

    Args:
        shape: ``(C, h, w)``.
        output_size: ``(H, W)``.

    Returns:
        The number of contractions.
    """
    channels, size = int(shape[0]), (int(shape[1]), int(shape[2]))
    values = channels * size[0] * size[1]
    contract = 0
    while min(_halved(size, contract)) >= 2:
        bottom = _halved(size, contract + 1)
        level = up_steps(bottom, output_size)
        if bottom[0] * bottom[1] * level_channels(level) < values:
            break
        contract += 1
    return contract


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


def _init(layer: nn.Module, gain: float, bias: float = 0.0) -> None:
    """Kaiming-normal initialization with the fan-in each output value really sees.

    A stride-2 transposed convolution sums over ``in_channels * k**2 / 4`` inputs per output on average, not
    ``in_channels * k**2``; using the true fan-in keeps activations at unit scale through the up-convolutions.
    """
    fan_in: float
    if isinstance(layer, nn.Linear):
        fan_in = layer.in_features
    else:
        assert isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))
        fan_in = layer.in_channels * KERNEL * KERNEL
        if isinstance(layer, nn.ConvTranspose2d):
            fan_in = fan_in / (layer.stride[0] * layer.stride[1])
    nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(fan_in))
    if layer.bias is not None:
        nn.init.constant_(layer.bias, bias)


def _stack(layers: OrderedDict[str, nn.Module], name: str, layer: nn.Module, final: bool = False) -> None:
    """Append a layer, initialized, followed by a leaky ReLU unless it is the final one."""
    if final:
        _init(layer, gain=1.0, bias=OUTPUT_BIAS)
        layers[name] = layer
        return
    _init(layer, gain=nn.init.calculate_gain("leaky_relu", SLOPE))
    layers[name] = layer
    layers[f"{name}_act"] = nn.LeakyReLU(SLOPE, inplace=True)


def _up_path(layers: OrderedDict[str, nn.Module], channels: int, steps: int, width: float, cap: int) -> None:
    """Append ``steps`` stride-2 up-convolutions, the last to RGB, or one 5x5 convolution to RGB when none."""
    for j in range(1, steps + 1):
        out = 3 if j == steps else level_channels(steps - j, width, cap)
        _stack(layers, f"upconv{j}", nn.ConvTranspose2d(channels, out, KERNEL, stride=2, padding=KERNEL // 2,
                                                        output_padding=1), final=j == steps)
        channels = out
    if steps == 0:
        _stack(layers, "conv_out", nn.Conv2d(channels, 3, KERNEL, padding=KERNEL // 2), final=True)


# ---------------------------------------------------------------------------------------------------------- options


#: The ``width`` option of both decoders.
_WIDTH = Option("width", 1.0, float, "scales every channel count (1.0: the paper's)", above=0)
#: The ``max_channels`` option of both decoders ("auto" or null: ``round(256 * width)``).
_MAX_CHANNELS = Option("max_channels", None, int, "the most channels of a layer ('auto': round(256 * width))",
                       minimum=1, optional=True, keywords=("auto",))

#: The options of the ``conv`` decoder.
CONV_OPTIONS = (
    _WIDTH,
    _MAX_CHANNELS,
    Option("convs", DEFAULT_CONVS, int, "stride-1 convolutions at the input resolution", minimum=0),
    Option("contract", "auto", int, "stride-2 convolutions before the up-convolutions ('auto': auto_contract)",
           minimum=0, optional=True, keywords=("auto",)),
)
#: The options of the ``fc`` decoder.
FC_OPTIONS = (
    _WIDTH,
    _MAX_CHANNELS,
    Option("hidden", None, int, "units of each fully connected layer but the last ('auto': round(4096 * width))",
           minimum=1, optional=True, keywords=("auto",)),
)


def _automatic(value: int | str | None) -> int | None:
    """An option's number, or ``None`` where it is left to the sizing rule (``"auto"`` or null)."""
    return None if value is None or value == "auto" else int(value)


# ---------------------------------------------------------------------------------------------------------- builders


def conv_decoder(spec: FeatureSpec, output_size: tuple[int, int], **options: Any) -> Decoder:
    """The decoder for feature maps: convolutions, an optional contracting part, stride-2 up-convolutions.

    Args:
        spec: a map ``(C, h, w)``.
        output_size: ``(H, W)`` of the predicted images.
        **options: ``width`` (number > 0, default 1.0: scales every channel count), ``max_channels`` (int, default
            ``round(256 * width)``), ``convs`` (stride-1 convolutions at the input resolution, default 3),
            ``contract`` (stride-2 convolutions before the up-convolutions, default ``"auto"``:
            :func:`auto_contract`).

    Returns:
        The decoder.

    Raises:
        InvalidOption: a vector spec, an unknown option or a bad value.

    Shape:
        input ``(B, C, h, w)``; output ``(B, 3, H, W)``.
    """
    spec, output = as_feature_spec(spec), size_pair(output_size, "output_size")
    if spec.kind != "map":
        raise InvalidOption(f"the conv decoder needs a feature map (C, h, w), got a vector of shape {spec}; "
                            "use the fc decoder (decoder='fc', or leave the decoder unset to choose automatically)")
    merged = validate_options("conv decoder", options, CONV_OPTIONS)
    width, convs = merged["width"], merged["convs"]
    cap = _automatic(merged["max_channels"])
    cap = max(1, round(MAX_CHANNELS * width)) if cap is None else cap
    contract = _automatic(merged["contract"])
    if contract is None:
        contract = auto_contract(spec.shape, output)

    bottom = _halved(spec.shape[1:], contract)
    steps = up_steps(bottom, output)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = spec.shape[0]
    for i in range(1, convs + 1):
        out = level_channels(steps - contract, width, cap)
        _stack(layers, f"conv{i}", nn.Conv2d(channels, out, KERNEL, padding=KERNEL // 2))
        channels = out
    for i in range(1, contract + 1):
        out = level_channels(steps - contract + i, width, cap)
        _stack(layers, f"contract{i}", nn.Conv2d(channels, out, KERNEL, stride=2, padding=KERNEL // 2))
        channels = out
    _up_path(layers, channels, steps, width, cap)
    resolved = {"width": width, "max_channels": cap, "convs": convs, "contract": contract}
    return Decoder("conv", spec, output, resolved, layers, (bottom[0] << steps, bottom[1] << steps),
                   fully_convolutional=True)


def fc_decoder(spec: FeatureSpec, output_size: tuple[int, int], **options: Any) -> Decoder:
    """The decoder for feature vectors, the paper's Table 1: three fully connected layers, a reshape to 4x4,
    stride-2 up-convolutions. A feature map is flattened first (the decoder then ignores its spatial layout).

    Args:
        spec: a vector ``(D,)`` or a map ``(C, h, w)``.
        output_size: ``(H, W)`` of the predicted images.
        **options: ``width`` (number > 0, default 1.0: scales every channel count and ``hidden``),
            ``max_channels`` (int, default ``round(256 * width)``), ``hidden`` (units of each fully connected
            layer but the last, default ``round(4096 * width)``).

    Returns:
        The decoder.

    Raises:
        InvalidOption: an unknown option or a bad value.

    Shape:
        input ``(B, *spec.shape)``; output ``(B, 3, H, W)``.
    """
    spec, output = as_feature_spec(spec), size_pair(output_size, "output_size")
    merged = validate_options("fc decoder", options, FC_OPTIONS)
    width = merged["width"]
    cap = _automatic(merged["max_channels"])
    cap = max(1, round(MAX_CHANNELS * width)) if cap is None else cap
    hidden = _automatic(merged["hidden"])
    hidden = max(1, round(FC_UNITS * width)) if hidden is None else hidden

    steps = up_steps((FC_START, FC_START), output)
    start = level_channels(steps, width, cap)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if spec.kind == "map":
        layers["flatten"] = nn.Flatten(1)
    _stack(layers, "fc1", nn.Linear(spec.numel, hidden))
    _stack(layers, "fc2", nn.Linear(hidden, hidden))
    _stack(layers, "fc3", nn.Linear(hidden, start * FC_START * FC_START))
    layers["reshape"] = nn.Unflatten(1, (start, FC_START, FC_START))
    _up_path(layers, start, steps, width, cap)
    resolved = {"width": width, "max_channels": cap, "hidden": hidden}
    return Decoder("fc", spec, output, resolved, layers, (FC_START << steps, FC_START << steps))


# ---------------------------------------------------------------------------------------------------------- registry


@hookimpl
def register_decoders(register: Callable[..., None]) -> None:
    """The paper's two decoder families: ``conv`` for feature maps, ``fc`` for feature vectors."""
    register("conv", conv_decoder, description="convolutions, optional contraction, stride-2 up-convolutions "
                                               "(for feature maps)")
    register("fc", fc_decoder, description="three fully connected layers, then up-convolutions (for feature "
                                           "vectors; the paper's Table 1)")
