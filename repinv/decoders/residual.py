"""A residual decoder for feature maps: more depth and better images per unit of compute than the paper's ``conv``.

Not the paper's architecture (that stays available as ``conv``): a convolution from the features, residual blocks
at the input resolution (normalized, so that the decoder trains stably with many more than the paper's five
convolutions), then stride-2 upsampling to the image, the last step predicting RGB. It is sized by the same rule
as the paper's decoders (:mod:`repinv.decoders.base`): ``width`` scales the same channel counts, and a map of ``h x
w`` cells is upsampled :func:`~repinv.decoders.base.up_steps` times. Like ``conv`` it is fully convolutional.

docs/architecture.md gives the measurements that chose its defaults (3x3 kernels, pixel-shuffle upsampling, batch
normalization) and the recipes that use it; docs/benchmarks.md the runs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from repinv.decoders.base import (
    MAX_CHANNELS_OPTION,
    OUTPUT_BIAS,
    SLOPE,
    WIDTH,
    Decoder,
    channel_cap,
    init_layer,
    level_channels,
    map_decoder_arguments,
    up_steps,
)
from repinv.errors import InvalidOption
from repinv.options import Option
from repinv.registry.hookspecs import hookimpl
from repinv.representations.base import FeatureSpec

__all__ = ["ResidualBlock", "ShuffleUp", "residual_decoder", "RESIDUAL_OPTIONS"]

#: The options of the ``residual`` decoder.
RESIDUAL_OPTIONS = (
    WIDTH,
    MAX_CHANNELS_OPTION,
    Option("blocks", 4, int, "residual blocks, two convolutions each, at the input resolution", minimum=0),
    Option("kernel", 3, int, "side of every convolution's kernel (odd)", minimum=1),
    Option("upsample", "shuffle", ("shuffle", "transposed"),
           "stride-2 upsampling: a convolution then pixel shuffle, or a transposed convolution (the paper's)"),
    Option("norm", "batch", ("batch", "none"), "normalization inside the residual blocks"),
)


def _norm(kind: str, channels: int) -> nn.Module:
    """Batch normalization, or nothing."""
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


class ResidualBlock(nn.Module):
    """``x + conv(act(norm(conv(act(norm(x))))))``: a pre-activation residual block (He et al., 2016).

    The second convolution starts at zero, so every block starts as the identity and a deep stack trains as stably
    as a shallow one.

    Args:
        channels: input and output channels.
        kernel: odd kernel side of both convolutions.
        norm: ``"batch"`` or ``"none"``.

    Shape:
        input ``(B, channels, h, w)``; output the same.
    """

    def __init__(self, channels: int, kernel: int, norm: str) -> None:
        super().__init__()
        biased = norm == "none"  # a bias before batch normalization is cancelled by it
        self.norm1 = _norm(norm, channels)
        self.conv1 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=biased)
        self.norm2 = _norm(norm, channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.act = nn.LeakyReLU(SLOPE)
        init_layer(self.conv1, gain=nn.init.calculate_gain("leaky_relu", SLOPE))
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)  # type: ignore[arg-type]  # always biased

    def forward(self, x: Tensor) -> Tensor:
        residual: Tensor = self.conv2(self.act(self.norm2(self.conv1(self.act(self.norm1(x))))))
        return x + residual


class ShuffleUp(nn.Module):
    """Stride-2 upsampling by a convolution to four times the channels and a pixel shuffle (Shi et al., 2016).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel: odd kernel side of the convolution.

    Shape:
        input ``(B, in_channels, h, w)``; output ``(B, out_channels, 2h, 2w)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4 * out_channels, kernel, padding=kernel // 2)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        upsampled: Tensor = self.shuffle(self.conv(x))
        return upsampled


def _upsampling(kind: str, in_channels: int, out_channels: int, kernel: int) -> nn.Module:
    if kind == "shuffle":
        return ShuffleUp(in_channels, out_channels, kernel)
    return nn.ConvTranspose2d(in_channels, out_channels, kernel, stride=2, padding=kernel // 2, output_padding=1)


def _initialized(layer: nn.Module, final: bool) -> nn.Module:
    """Kaiming initialization of a layer's convolution for a leaky ReLU after it, or unit gain and a mid-grey bias
    for the layer that predicts RGB."""
    conv = layer.conv if isinstance(layer, ShuffleUp) else layer
    gain = 1.0 if final else nn.init.calculate_gain("leaky_relu", SLOPE)
    init_layer(conv, gain=gain, bias=OUTPUT_BIAS if final else 0.0)
    return layer


def residual_decoder(spec: FeatureSpec, output_size: tuple[int, int], **options: Any) -> Decoder:
    """The residual decoder for feature maps: a convolution, residual blocks, stride-2 upsampling to RGB.

    Args:
        spec: a map ``(C, h, w)``.
        output_size: ``(H, W)`` of the predicted images.
        **options: ``width`` (number > 0, default 1.0: scales every channel count as for ``conv``),
            ``max_channels`` (int, default ``round(256 * width)``), ``blocks`` (residual blocks at the input
            resolution, default 4), ``kernel`` (odd kernel side, default 3), ``upsample`` (``"shuffle"``, default,
            or ``"transposed"``), ``norm`` (``"batch"``, default, or ``"none"``).

    Returns:
        The decoder.

    Raises:
        InvalidOption: a vector spec, an unknown option or a bad value.

    Shape:
        input ``(B, C, h, w)``; output ``(B, 3, H, W)``.
    """
    spec, output, merged = map_decoder_arguments("residual", spec, output_size, options, RESIDUAL_OPTIONS)
    width, kernel, norm, upsample = merged["width"], merged["kernel"], merged["norm"], merged["upsample"]
    if kernel % 2 == 0:
        raise InvalidOption(f"residual decoder option kernel must be odd (3, 5, ...), got {kernel}")
    cap = channel_cap(width, merged["max_channels"])
    steps = up_steps(spec.shape[1:], output)
    channels = level_channels(steps, width, cap)

    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv_in"] = _initialized(nn.Conv2d(spec.shape[0], channels, kernel, padding=kernel // 2), final=False)
    for i in range(1, merged["blocks"] + 1):
        layers[f"block{i}"] = ResidualBlock(channels, kernel, norm)
    layers["norm"] = _norm(norm, channels)
    layers["act"] = nn.LeakyReLU(SLOPE)
    for j in range(1, steps + 1):
        out = 3 if j == steps else level_channels(steps - j, width, cap)
        layers[f"up{j}"] = _initialized(_upsampling(upsample, channels, out, kernel), final=j == steps)
        if j < steps:
            layers[f"up{j}_act"] = nn.LeakyReLU(SLOPE)
        channels = out
    if steps == 0:
        layers["conv_out"] = _initialized(nn.Conv2d(channels, 3, kernel, padding=kernel // 2), final=True)
    resolved = {"width": width, "max_channels": cap, "blocks": merged["blocks"], "kernel": kernel,
                "upsample": upsample, "norm": norm}
    final = (spec.shape[1] << steps, spec.shape[2] << steps)
    return Decoder("residual", spec, output, resolved, layers, final, fully_convolutional=True)


@hookimpl
def register_decoders(register: Callable[..., None]) -> None:
    """The residual decoder (repinv's own, for feature maps)."""
    register("residual", residual_decoder, description="residual blocks with batch normalization, pixel-shuffle "
                                                       "upsampling (for feature maps; not the paper's)")
