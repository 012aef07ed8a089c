"""Tests of repinv.decoders.residual: shapes, the sizing rule shared with conv, options, a block's identity start,
gradients in float64, batch independence in evaluation mode, any-size inversion and config round trips."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from repinv.decoders import level_channels, residual_decoder
from repinv.decoders.residual import ResidualBlock, ShuffleUp
from repinv.errors import InvalidOption
from repinv.registry.factories import build_decoder, decoder_from_config
from repinv.representations.base import FeatureSpec

TINY = 0.125  # width that keeps every test network small


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("shape", [(31, 8, 8), (58, 4, 4), (133, 16, 16), (16, 13, 7), (8, 64, 64)])
@pytest.mark.parametrize("output", [(64, 64), (48, 64), (227, 227)])
@pytest.mark.parametrize("upsample", ["shuffle", "transposed"])
def test_shape(shape: tuple[int, int, int], output: tuple[int, int], upsample: str) -> None:
    decoder = build_decoder(FeatureSpec(shape), (64, 64), "residual", output, width=TINY, blocks=1,
                            upsample=upsample).eval()
    with torch.no_grad():
        out = decoder(torch.randn(2, *shape))
    assert out.shape == (2, 3, *output) and out.dtype == torch.float32


def test_layout_follows_the_shared_sizing_rule() -> None:
    decoder = residual_decoder(FeatureSpec((31, 8, 8)), (64, 64), width=0.25, blocks=3)
    names = [name for name, _ in decoder.layers.named_children()]
    assert names == ["conv_in", "block1", "block2", "block3", "norm", "act", "up1", "up1_act", "up2", "up2_act", "up3"]
    convs = [m for m in decoder.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.kernel_size == (3, 3) for m in convs)
    # 8x8 -> 64x64 is three upsamplings: the map carries channels(3), the up path channels(2), channels(1), RGB
    assert decoder.layers.conv_in.out_channels == level_channels(3, 0.25) == 32
    assert [getattr(decoder.layers, f"up{j}").conv.out_channels for j in (1, 2, 3)] == [4 * 16, 4 * 8, 4 * 3]
    assert decoder.final_size == (64, 64) and decoder.fully_convolutional


def test_blocks_start_as_the_identity_and_the_output_mid_grey() -> None:
    block = ResidualBlock(8, 3, "batch")
    x = torch.randn(4, 8, 6, 6)
    assert torch.equal(block(x), x)
    decoder = residual_decoder(FeatureSpec((31, 8, 8)), (64, 64), width=TINY).eval()
    assert decoder.layers.up3.conv.bias.detach().eq(0.5).all()


def test_without_steps_the_last_layer_is_a_convolution_to_rgb() -> None:
    decoder = residual_decoder(FeatureSpec((8, 64, 64)), (64, 64), width=TINY, blocks=1)
    assert isinstance(decoder.layers.conv_out, nn.Conv2d) and decoder.layers.conv_out.out_channels == 3


def test_shuffle_up_doubles_each_side() -> None:
    assert ShuffleUp(5, 7, 3)(torch.randn(2, 5, 3, 4)).shape == (2, 7, 6, 8)


@pytest.mark.parametrize(("options", "match"), [
    ({"kernel": 4}, "kernel must be odd"),
    ({"upsample": "nearest"}, "upsample"),
    ({"norm": "layer"}, "norm"),
    ({"blocks": -1}, "blocks"),
    ({"convs": 3}, "unknown residual decoder option convs"),
])
def test_invalid_options(options: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidOption, match=match):
        residual_decoder(FeatureSpec((31, 8, 8)), (64, 64), **options)


def test_a_vector_is_refused_with_the_fix() -> None:
    with pytest.raises(InvalidOption, match="use the fc decoder"):
        residual_decoder(FeatureSpec((1000,)), (64, 64))


def test_gradcheck_float64() -> None:
    decoder = residual_decoder(FeatureSpec((3, 2, 2)), (8, 8), width=0.05, blocks=1, norm="none").double()
    for parameter in decoder.parameters():  # the zero-initialized convolutions would hide the blocks' gradients
        nn.init.normal_(parameter, 0.0, 0.3)
    features = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(decoder, (features,))


def test_batch_independence_in_evaluation_mode() -> None:
    decoder = residual_decoder(FeatureSpec((31, 8, 8)), (64, 64), width=TINY, blocks=2)
    decoder.train()
    decoder(torch.randn(8, 31, 8, 8))  # move the running statistics away from their start
    decoder.eval()
    batch = torch.randn(5, 31, 8, 8)
    with torch.no_grad():
        together = decoder(batch)
        alone = torch.cat([decoder(batch[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_any_size_features_give_images_at_the_same_scale() -> None:
    decoder = residual_decoder(FeatureSpec((31, 8, 8)), (64, 64), width=TINY, blocks=1).eval()
    with torch.no_grad():
        assert decoder.forward_any_size(torch.randn(1, 31, 13, 17)).shape == (1, 3, 104, 136)


def test_config_round_trip_rebuilds_the_same_outputs() -> None:
    decoder = build_decoder(FeatureSpec((31, 8, 8)), 64, "residual", width=TINY, blocks=2, upsample="transposed")
    decoder.train()
    decoder(torch.randn(4, 31, 8, 8))
    config = json.loads(json.dumps(decoder.config()))
    assert config["options"] == {"width": TINY, "max_channels": 32, "blocks": 2, "kernel": 3,
                                 "upsample": "transposed", "norm": "batch"}
    rebuilt = decoder_from_config(config)
    rebuilt.load_state_dict(decoder.state_dict())
    features = torch.randn(3, 31, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(features), decoder.eval()(features))


def test_deep_stacks_train_without_diverging() -> None:
    """Sixteen blocks (33 convolutions) at a high rate: the loss falls and stays finite."""
    decoder = residual_decoder(FeatureSpec((31, 8, 8)), (32, 32), width=TINY, blocks=16)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=4e-3)
    features, images = torch.randn(16, 31, 8, 8), torch.rand(16, 3, 32, 32)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(decoder(features), images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < 0.5 * losses[0]
