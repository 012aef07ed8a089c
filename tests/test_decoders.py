"""Tests of repinv.decoders: shapes over a grid of feature and image sizes, the sizing rule, config round trips,
option validation, gradients and batch independence."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from repinv.decoders import Decoder, auto_contract, conv_decoder, fc_decoder, level_channels, up_steps
from repinv.errors import InvalidOption, ShapeError, UnknownName
from repinv.registry.factories import build_decoder, decoder_from_config
from repinv.registry.hookspecs import hookimpl
from repinv.registry.manager import get_registry, register_plugin, unregister_plugin
from repinv.representations.base import FeatureSpec

TINY = 0.0625  # width that keeps every test network small

STRIDES = [1, 2, 4, 8, 16, 32]
IMAGE_SIZES = [32, 48, 64, 100, 128, 227, 256]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("image", IMAGE_SIZES)
@pytest.mark.parametrize("stride", STRIDES)
def test_map_output_is_image_size(stride: int, image: int) -> None:
    side = math.ceil(image / stride)
    channels = 4 if stride == 1 else 31  # image-like maps are shallow; keep the 256x256 case cheap
    spec = FeatureSpec((channels, side, side))
    decoder = build_decoder(spec, (image, image), width=TINY, convs=1)
    assert decoder.config()["name"] == "conv"
    with torch.no_grad():
        out = decoder(torch.randn(2, *spec.shape))
    assert out.shape == (2, 3, image, image)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("image", IMAGE_SIZES)
@pytest.mark.parametrize("dim", [1, 31, 1000])
def test_vector_output_is_image_size(dim: int, image: int) -> None:
    decoder = build_decoder(FeatureSpec((dim,)), (image, image), width=TINY)
    assert decoder.config()["name"] == "fc"
    with torch.no_grad():
        out = decoder(torch.randn(3, dim))
    assert out.shape == (3, 3, image, image)


@pytest.mark.parametrize("shape", [(31, 8, 8), (256, 6, 6), (16, 13, 7), (1000,)])
@pytest.mark.parametrize("output", [(32, 32), (48, 64), (100, 37), (64, 227), (7, 5), (1, 1)])
def test_any_output_size_including_smaller_and_non_square(shape: tuple[int, ...], output: tuple[int, int]) -> None:
    decoder = build_decoder(FeatureSpec(shape), (64, 64), output_size=output, width=TINY)
    assert decoder.output_size == output
    with torch.no_grad():
        assert decoder(torch.randn(2, *shape)).shape == (2, 3, *output)


def test_alexnet_sized_decoders() -> None:
    conv5 = build_decoder(FeatureSpec((256, 6, 6)), (227, 227), width=TINY)
    fc8 = build_decoder(FeatureSpec((1000,)), (227, 227), width=TINY)
    with torch.no_grad():
        assert conv5(torch.randn(1, 256, 6, 6)).shape == (1, 3, 227, 227)
        assert fc8(torch.randn(1, 1000)).shape == (1, 3, 227, 227)


def test_sizes_given_as_int_or_json_list() -> None:
    spec = FeatureSpec((31, 8, 8))
    assert build_decoder(spec, 64, width=TINY).output_size == (64, 64)
    assert build_decoder(spec, [64, 48], output_size=[32, 16], width=TINY).output_size == (32, 16)


# ---------------------------------------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("size, output, steps", [
    ((8, 8), (64, 64), 3),       # HOG at 64: exact
    ((6, 6), (227, 227), 5),     # conv5: 192 is nearer 227 than 384 on a log scale
    ((13, 13), (227, 227), 4),   # conv3/conv4: 208
    ((4, 4), (227, 227), 6),     # fc: 256 (128 is farther)
    ((4, 4), (128, 128), 5),     # Table 1
    ((55, 55), (32, 32), 0),     # never negative: a larger map is resized down
    ((8, 8), (48, 64), 3),       # the larger axis decides
    ((2, 2), (3, 3), 1),         # 4 is nearer 3 than 2 is, on a log scale
])
def test_up_steps(size: tuple[int, int], output: tuple[int, int], steps: int) -> None:
    assert up_steps(size, output) == steps


def test_level_channels_follow_table_1() -> None:
    assert [level_channels(k) for k in range(1, 7)] == [32, 64, 128, 256, 256, 256]
    assert level_channels(0) == level_channels(-3) == 32
    assert [level_channels(k, 0.25) for k in range(1, 6)] == [8, 16, 32, 64, 64]
    assert level_channels(5, 1.0, max_channels=512) == 512
    assert level_channels(1, 0.001) == 1


@pytest.mark.parametrize("shape, output, contract", [
    ((31, 8, 8), (64, 64), 1),        # HOG: contracted, 4x4x256 still holds 8x8x31
    ((58, 8, 8), (64, 64), 1),        # LBP
    ((31, 32, 32), (256, 256), 1),
    ((256, 6, 6), (227, 227), 0),     # conv5: contraction would be a bottleneck
    ((64, 55, 55), (227, 227), 0),    # conv1
    ((3, 64, 64), (64, 64), 2),
    ((31, 1, 1), (64, 64), 0),        # nothing to halve
])
def test_auto_contract(shape: tuple[int, int, int], output: tuple[int, int], contract: int) -> None:
    assert auto_contract(shape, output) == contract
    assert conv_decoder(FeatureSpec(shape), output, width=TINY).options["contract"] == contract


def test_fc_decoder_is_table_1() -> None:
    decoder = fc_decoder(FeatureSpec((1000,)), (128, 128))
    weights = {k: v for k, v in shapes(decoder).items() if k.endswith("weight")}
    assert weights == {
        "layers.fc1.weight": (4096, 1000), "layers.fc2.weight": (4096, 4096), "layers.fc3.weight": (4096, 4096),
        "layers.upconv1.weight": (256, 256, 5, 5), "layers.upconv2.weight": (256, 128, 5, 5),
        "layers.upconv3.weight": (128, 64, 5, 5), "layers.upconv4.weight": (64, 32, 5, 5),
        "layers.upconv5.weight": (32, 3, 5, 5),
    }


def test_hog_decoder_layout_and_width_scaling() -> None:
    spec = FeatureSpec((31, 8, 8))
    full, quarter = conv_decoder(spec, (64, 64)), conv_decoder(spec, (64, 64), width=0.25)
    names = [name for name, _ in full.layers.named_children() if not name.endswith("_act")]
    assert names == ["conv1", "conv2", "conv3", "contract1", "upconv1", "upconv2", "upconv3", "upconv4"]
    assert params(full) == 2_816_067
    assert params(quarter) == 195_219
    assert shapes(full).keys() == shapes(quarter).keys()


def test_every_layer_but_the_last_is_followed_by_leaky_relu() -> None:
    for decoder in (conv_decoder(FeatureSpec((31, 8, 8)), (64, 64), width=TINY),
                    fc_decoder(FeatureSpec((10,)), (32, 32), width=TINY)):
        children = list(decoder.layers.children())
        weighted = [i for i, m in enumerate(children) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
        for i in weighted[:-1]:
            assert isinstance(children[i + 1], nn.LeakyReLU) and children[i + 1].negative_slope == 0.2
        assert weighted[-1] == len(children) - 1  # linear output: nothing after the last layer
        for m in children:
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                assert m.kernel_size == (5, 5)


def test_output_is_linear_and_starts_mid_grey() -> None:
    decoder = conv_decoder(FeatureSpec((8, 8, 8)), (64, 64), width=TINY).eval()
    with torch.no_grad():
        assert torch.equal(decoder(torch.zeros(1, 8, 8, 8)), torch.full((1, 3, 64, 64), 0.5))
        out = decoder(100 * torch.randn(4, 8, 8, 8))
    assert out.min() < 0 and out.max() > 1  # neither clamped nor squashed


def test_explicit_options_change_the_architecture() -> None:
    spec = FeatureSpec((31, 8, 8))
    decoder = conv_decoder(spec, (64, 64), width=0.25, contract=2, convs=0, max_channels=48)
    names = [name for name, _ in decoder.layers.named_children() if not name.endswith("_act")]
    assert names == ["contract1", "contract2"] + [f"upconv{j}" for j in range(1, 6)]
    assert max(w.shape[0] for k, w in decoder.state_dict().items() if k.endswith("weight")) == 48
    fc = fc_decoder(FeatureSpec((100,)), (32, 32), width=0.5, hidden=64)
    assert fc.state_dict()["layers.fc2.weight"].shape == (64, 64)


# ---------------------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("shape, decoder, output, options", [
    ((31, 8, 8), None, (64, 64), {"width": TINY}),
    ((31, 8, 8), "conv", (48, 64), {"width": TINY, "contract": 2, "convs": 1, "max_channels": 12}),
    ((256, 6, 6), None, (227, 227), {"width": TINY}),
    ((1000,), None, (64, 64), {"width": TINY, "hidden": 32}),
    ((16, 4, 4), "fc", (32, 32), {"width": TINY}),
])
def test_config_json_round_trip(shape: tuple[int, ...], decoder: str | None, output: tuple[int, int],
                                options: dict) -> None:
    original = build_decoder(FeatureSpec(shape), (64, 64), decoder=decoder, output_size=output, **options).eval()
    config = json.loads(json.dumps(original.config()))
    assert config["spec"] == list(shape) and config["output_size"] == list(output)
    assert set(config["options"]) >= set(options)
    rebuilt = decoder_from_config(config).eval()
    assert shapes(rebuilt) == shapes(original)
    assert rebuilt.config() == config
    rebuilt.load_state_dict(original.state_dict())
    features = torch.randn(2, *shape)
    with torch.no_grad():
        assert torch.equal(rebuilt(features), original(features))


def test_config_resolves_automatic_options() -> None:
    options = conv_decoder(FeatureSpec((31, 8, 8)), (64, 64), width=0.25).config()["options"]
    assert options == {"width": 0.25, "max_channels": 64, "convs": 3, "contract": 1}
    options = fc_decoder(FeatureSpec((10,)), (64, 64), width=0.5).config()["options"]
    assert options == {"width": 0.5, "max_channels": 128, "hidden": 2048}


def test_bad_config() -> None:
    with pytest.raises(InvalidOption, match="output_size"):
        decoder_from_config({"name": "conv", "spec": [3, 4, 4]})
    with pytest.raises(UnknownName, match="unknown decoder 'nope'"):
        decoder_from_config({"name": "nope", "spec": [3], "output_size": [8, 8], "options": {}})


# ---------------------------------------------------------------------------------------------------------- choice


def test_automatic_choice_and_overrides() -> None:
    assert isinstance(build_decoder(FeatureSpec((10,)), (32, 32), width=TINY), Decoder)
    assert build_decoder(FeatureSpec((10,)), (32, 32), width=TINY).name == "fc"
    assert build_decoder(FeatureSpec((4, 8, 8)), (32, 32), width=TINY).name == "conv"
    flat = build_decoder(FeatureSpec((4, 8, 8)), (32, 32), decoder="fc", width=TINY)
    with torch.no_grad():
        assert flat(torch.randn(2, 4, 8, 8)).shape == (2, 3, 32, 32)
    with pytest.raises(InvalidOption, match="needs a feature map.*fc decoder"):
        build_decoder(FeatureSpec((10,)), (32, 32), decoder="conv")
    with pytest.raises(UnknownName, match="unknown decoder 'unet'.*conv"):
        build_decoder(FeatureSpec((10,)), (32, 32), decoder="unet")


class _Tiny(nn.Module):
    """A third party's decoder: one linear layer and a reshape."""

    def __init__(self, spec: FeatureSpec, output_size: tuple[int, int], gain: float = 1.0) -> None:
        super().__init__()
        self.spec, self.output_size, self.gain = spec, output_size, gain
        self.linear = nn.Linear(spec.numel, 3 * output_size[0] * output_size[1])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.gain * self.linear(features.flatten(1)).reshape(-1, 3, *self.output_size)

    def config(self) -> dict:
        return {"name": "tiny", "spec": list(self.spec.shape), "output_size": list(self.output_size),
                "options": {"gain": self.gain}}


class _TinyPlugin:
    @hookimpl
    def register_decoders(self, register) -> None:  # type: ignore[no-untyped-def]
        register("tiny", _Tiny, description="one linear layer")


def test_third_party_decoder_through_the_registry() -> None:
    name = register_plugin(_TinyPlugin(), name="tiny-decoder-test")
    try:
        assert "tiny" in get_registry().decoders
        decoder = build_decoder(FeatureSpec((5,)), (4, 6), decoder="tiny", gain=2.0)
        rebuilt = decoder_from_config(json.loads(json.dumps(decoder.config())))
        assert isinstance(rebuilt, _Tiny) and rebuilt.gain == 2.0 and shapes(rebuilt) == shapes(decoder)
        assert decoder(torch.randn(2, 5)).shape == (2, 3, 4, 6)
    finally:
        unregister_plugin(name)


# ---------------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("builder, options, match", [
    (conv_decoder, {"widht": 0.5}, "unknown conv decoder option widht; valid options: width, "),
    (fc_decoder, {"contract": 1}, "unknown fc decoder option contract; valid options: "),
    (conv_decoder, {"width": 0}, "conv decoder option width must be a positive number, got 0"),
    (conv_decoder, {"width": -1.0}, "width"),
    (conv_decoder, {"width": float("nan")}, "width"),
    (conv_decoder, {"width": "wide"}, "width"),
    (conv_decoder, {"width": True}, "width"),
    (conv_decoder, {"contract": -1}, "contract must be a non-negative integer, 'auto' or null, got -1"),
    (conv_decoder, {"contract": 1.5}, "contract"),
    (conv_decoder, {"contract": "two"}, "contract"),
    (conv_decoder, {"convs": "3"}, "convs must be a non-negative integer, got '3'"),
    (conv_decoder, {"convs": False}, "convs"),
    (conv_decoder, {"max_channels": 0}, "max_channels"),
    (fc_decoder, {"hidden": 0}, "hidden"),
    (fc_decoder, {"hidden": [64]}, "hidden"),
])
def test_invalid_options(builder, options: dict, match: str) -> None:  # type: ignore[no-untyped-def]
    spec = FeatureSpec((4, 8, 8))
    with pytest.raises(InvalidOption, match=match):
        builder(spec, (32, 32), **options)


def test_json_cli_values_are_accepted() -> None:
    decoder = conv_decoder(FeatureSpec((4, 8, 8)), (32, 32), width=1, contract=2.0, convs=1, max_channels="auto")
    assert decoder.options == {"width": 1.0, "max_channels": 256, "convs": 1, "contract": 2}
    assert conv_decoder(FeatureSpec((4, 8, 8)), (32, 32), width=TINY, contract=None).options["contract"] == 3


@pytest.mark.parametrize("size", [(0, 32), (32,), "64", (32.0, 32), (True, 32), -5])
def test_invalid_sizes(size) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidOption, match="output_size must be"):
        build_decoder(FeatureSpec((10,)), (32, 32), output_size=size)


def test_wrong_input_shape() -> None:
    decoder = conv_decoder(FeatureSpec((31, 8, 8)), (64, 64), width=TINY)
    with pytest.raises(ShapeError, match=r"features for the conv decoder must have shape \(B, 31, 8, 8\)"):
        decoder(torch.randn(2, 31, 8, 9))
    with pytest.raises(ShapeError):
        decoder(torch.randn(31, 8, 8))
    with pytest.raises(ShapeError, match="floating point"):
        decoder(torch.zeros(2, 31, 8, 8, dtype=torch.long))
    with pytest.raises(ShapeError):
        fc_decoder(FeatureSpec((10,)), (32, 32), width=TINY)(torch.randn(2, 11))


# ---------------------------------------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("shape, output", [((31, 8, 8), (64, 64)), ((256, 6, 6), (100, 100)), ((20,), (48, 40))])
def test_backward_gives_finite_gradients(shape: tuple[int, ...], output: tuple[int, int]) -> None:
    decoder = build_decoder(FeatureSpec(shape), output, width=TINY)
    features = torch.randn(4, *shape, requires_grad=True)
    loss = (decoder(features) - torch.rand(4, 3, *output)).pow(2).mean()
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in decoder.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert features.grad is not None and torch.isfinite(features.grad).all()
    assert any(p.grad.abs().sum() > 0 for p in decoder.parameters())


def test_initial_activations_keep_their_scale() -> None:
    decoder = conv_decoder(FeatureSpec((64, 8, 8)), (64, 64), width=0.5, contract=0).eval()
    with torch.no_grad():
        out = decoder(torch.randn(8, 64, 8, 8))
    assert 0.2 < (out - 0.5).std() < 5  # neither vanishing nor exploding through the up-convolutions


@pytest.mark.parametrize("shape, output", [((31, 8, 8), (64, 64)), ((16, 6, 6), (100, 80)), ((12,), (32, 32))])
def test_batch(shape: tuple[int, ...], output: tuple[int, int]) -> None:
    decoder = build_decoder(FeatureSpec(shape), output, width=TINY).eval()
    features = torch.randn(5, *shape)
    with torch.no_grad():
        batched = decoder(features)
        single = torch.cat([decoder(features[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(single, batched, rtol=1e-5, atol=1e-5)


def test_channels_last_input() -> None:
    spec = FeatureSpec((31, 8, 8))
    features = torch.randn(3, *spec.shape)
    for name in ("conv", "fc"):
        decoder = build_decoder(spec, (64, 64), decoder=name, width=TINY).eval()
        with torch.no_grad():
            expected = decoder(features)
            decoder = decoder.to(memory_format=torch.channels_last)
            got = decoder(features.to(memory_format=torch.channels_last))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
