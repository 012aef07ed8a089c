"""The paper's decoders (Dosovitskiy & Brox, CVPR 2016): ``conv`` for feature maps, ``fc`` for feature vectors.

``fc`` follows the paper's Table 1: three fully connected layers, a reshape to 4x4, stride-2 up-convolutions.
``conv`` has convolutions at the input resolution, an optional contracting part and stride-2 up-convolutions. All
kernels are 5x5 and every hidden layer is followed by a leaky ReLU, as in the paper. Both are sized by the rule in
:mod:`repinv.decoders.base`; docs/architecture.md states it in full.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from repinv.decoders.base import (
    MAX_CHANNELS_OPTION,
    OUTPUT_BIAS,
    SLOPE,
    WIDTH,
    Decoder,
    automatic,
    channel_cap,
    halved,
    init_layer,
    level_channels,
    map_decoder_arguments,
    up_steps,
)
from repinv.options import Option, size_pair, validate_options
from repinv.registry.hookspecs import hookimpl
from repinv.representations.base import FeatureSpec, as_feature_spec

__all__ = ["conv_decoder", "fc_decoder", "auto_contract", "CONV_OPTIONS", "FC_OPTIONS", "KERNEL"]

KERNEL = 5  # every convolution and up-convolution is 5x5, as in the paper
FC_UNITS = 4096  # Table 1's fully connected layers
FC_START = 4  # the fc decoder reshapes to a 4x4 map
DEFAULT_CONVS = 3  # stride-1 convolutions at the input resolution of the conv decoder


# ---------------------------------------------------------------------------------------------------------- rule


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
    while min(halved(size, contract)) >= 2:
        bottom = halved(size, contract + 1)
        level = up_steps(bottom, output_size)
        if bottom[0] * bottom[1] * level_channels(level) < values:
            break
        contract += 1
    return contract


def _stack(layers: OrderedDict[str, nn.Module], name: str, layer: nn.Module, final: bool = False) -> None:
    """Append a layer, initialized, followed by a leaky ReLU unless it is the final one."""
    if final:
        init_layer(layer, gain=1.0, bias=OUTPUT_BIAS)
        layers[name] = layer
        return
    init_layer(layer, gain=nn.init.calculate_gain("leaky_relu", SLOPE))
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


#: The options of the ``conv`` decoder.
CONV_OPTIONS = (
    WIDTH,
    MAX_CHANNELS_OPTION,
    Option("convs", DEFAULT_CONVS, int, "stride-1 convolutions at the input resolution", minimum=0),
    Option("contract", "auto", int, "stride-2 convolutions before the up-convolutions ('auto': auto_contract)",
           minimum=0, optional=True, keywords=("auto",)),
)
#: The options of the ``fc`` decoder.
FC_OPTIONS = (
    WIDTH,
    MAX_CHANNELS_OPTION,
    Option("hidden", None, int, "units of each fully connected layer but the last ('auto': round(4096 * width))",
           minimum=1, optional=True, keywords=("auto",)),
)


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
    spec, output, merged = map_decoder_arguments("conv", spec, output_size, options, CONV_OPTIONS)
    width, convs = merged["width"], merged["convs"]
    cap = channel_cap(width, merged["max_channels"])
    contract = automatic(merged["contract"])
    if contract is None:
        contract = auto_contract(spec.shape, output)

    bottom = halved(spec.shape[1:], contract)
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
    cap = channel_cap(width, merged["max_channels"])
    hidden = automatic(merged["hidden"])
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
