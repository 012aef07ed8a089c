"""The timm plugin: any layer of any timm model, outputs brought to maps or vectors, weights, listing.

No pretrained weights are available where the tests run: models use random weights (``weights=none``) or a local
file, and ``weights=pretrained`` is exercised offline (Hugging Face Hub in offline mode, torch's download failing).
"""

from __future__ import annotations

import functools
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from conftest import assert_channels_last_gives_the_same_features, declared_entry_point, registered_family
from torch import nn

import repinv_timm
from repinv.errors import InvalidOption, ShapeError, UnknownVariant, WeightsUnavailable
from repinv.registry.factories import create_representation
from repinv.representations.base import FeatureSpec
from repinv.representations.networks import capture
from repinv_timm.layers import TimmLayer, create_timm, featured_layers, timm_variants, to_features

SWIN = "swin_tiny_patch4_window7_224"  # the smallest Swin in timm
VIT = "vit_tiny_patch16_224"

#: (model, layer) → features at the model's input size (224x224 for all four).
CASES: dict[tuple[str, str], tuple[int, ...]] = {
    ("resnet18", "layer3"): (256, 14, 14),
    ("resnet18", "pooled"): (512,),
    ("resnet18", "logits"): (1000,),
    (VIT, "blocks.5"): (192, 14, 14),  # tokens on the 14x14 patch grid, class token dropped
    (VIT, "pooled"): (192,),
    ("convnext_atto", "stages.1"): (80, 28, 28),
    ("convnext_atto", "stages.0.blocks.0.norm"): (40, 56, 56),  # channels-last inside the block
    (SWIN, "layers.0"): (96, 56, 56),  # channels-last stage
}


@functools.cache
def _rep(model: str, layer: str) -> TimmLayer:
    """A random-weight representation, built once per test module run (building a model takes up to a second)."""
    return TimmLayer(model, layer, weights="none").eval()


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """No network and empty caches: the Hub in offline mode, torch's download failing; returns URLs tried."""
    import huggingface_hub.constants

    tried: list[str] = []

    def fail(url: str, *args: object, **kwargs: object) -> None:
        tried.append(url)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    return tried


def _save(path: Path, state: dict[str, torch.Tensor]) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    return path


# --------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("case", list(CASES), ids=lambda c: f"{c[0]}:{c[1]}")
def test_shapes_equal_spec(case: tuple[str, str]) -> None:
    representation = _rep(*case)
    features = representation(torch.rand(2, 3, 40, 48))
    assert features.shape == (2, *CASES[case])
    assert representation.spec((40, 48)) == FeatureSpec(CASES[case])
    assert representation.spec((64, 64)) == FeatureSpec(CASES[case])  # resized: the size does not matter
    assert features.is_contiguous() and torch.isfinite(features).all()


def test_created_by_name_matches_spec() -> None:
    representation = create_representation("timm:resnet18:layer2", weights="none")
    assert representation.name == "timm:resnet18:layer2" and not representation.training
    assert representation(torch.rand(1, 3, 32, 32)).shape == (1, *representation.spec((32, 32)).shape) == \
        (1, 128, 28, 28)


def test_tokens_become_a_grid_without_the_class_token() -> None:
    representation = _rep(VIT, "blocks.2")
    images = torch.rand(2, 3, 224, 224)
    tokens = capture(representation.model, representation.model.blocks[2], representation._prepare(images))
    assert tokens.shape == (2, 197, 192) and representation.model.num_prefix_tokens == 1
    expected = tokens[:, 1:].transpose(1, 2).reshape(2, 192, 14, 14)
    torch.testing.assert_close(representation(images), expected, atol=0, rtol=0)


def test_channels_last_becomes_channels_first() -> None:
    representation = _rep(SWIN, "layers.0")
    images = torch.rand(1, 3, 224, 224)
    raw = capture(representation.model, representation.model.layers[0], representation._prepare(images))
    assert raw.shape == (1, 56, 56, 96)
    torch.testing.assert_close(representation(images), raw.permute(0, 3, 1, 2), atol=0, rtol=0)
    forced = TimmLayer("resnet18", "layer1", weights="none", layout="NHWC")  # wrong on purpose: it is obeyed
    assert forced.spec((64, 64)).shape == (56, 64, 56)
    assert forced(torch.rand(1, 3, 32, 32)).shape == (1, 56, 64, 56)


def test_to_features_rules() -> None:
    size = (224, 224)
    x = torch.rand(2, 7, 7, 7)  # every reading fits: the model's own format decides
    assert to_features(x, batch=2, input_size=size, default_layout="NHWC").shape == (2, 7, 7, 7)
    torch.testing.assert_close(to_features(x, batch=2, input_size=size, default_layout="NHWC"), x.permute(0, 3, 1, 2))
    assert to_features(torch.rand(2, 16, 14, 28), batch=2, input_size=(112, 224)).shape == (2, 16, 14, 28)
    assert to_features(torch.rand(2, 14, 28, 16), batch=2, input_size=(112, 224)).shape == (2, 16, 14, 28)
    registers = torch.rand(2, 5 + 49, 8)  # class + 4 register tokens
    grid = to_features(registers, batch=2, input_size=size, num_prefix_tokens=5)
    torch.testing.assert_close(grid, registers[:, 5:].transpose(1, 2).reshape(2, 8, 7, 7))
    assert to_features(torch.rand(2, 16, 8), batch=2, input_size=size, num_prefix_tokens=1).shape == (2, 8, 4, 4)
    assert to_features(torch.rand(2, 12, 8), batch=2, input_size=size, grid=(3, 4)).shape == (2, 8, 3, 4)
    refused = [((torch.rand(2, 3), torch.rand(2, 3)), "outputs a tuple of 2 values, not one tensor"),
               ([torch.rand(2, 3)], "outputs a list of 1 values"),
               (torch.rand(16, 49, 8), "first dimension is 16 for 2 images"),
               (torch.rand(2, 3, 4, 5, 6), "5 dimensions"),
               (torch.rand(2), "1 dimensions"),
               (torch.rand(2, 11, 8), "11 tokens minus 1 prefix tokens form no grid")]
    for output, message in refused:
        with pytest.raises(ShapeError, match=message):
            to_features(output, batch=2, input_size=size, num_prefix_tokens=1, what="x")


def test_tuple_output_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    representation = TimmLayer("resnet18", "layer1.0", weights="none")
    monkeypatch.setattr(representation.model.layer1[0], "forward", lambda x: (x, x))
    with pytest.raises(ShapeError, match=r"timm:resnet18:layer1.0 outputs a tuple of 2 values, not one tensor"):
        representation(torch.rand(1, 3, 32, 32))


def test_windows_folded_into_the_batch_are_refused() -> None:
    with pytest.raises(ShapeError, match="first dimension is 64 for 1 images"):
        _rep(SWIN, "layers.0.blocks.0.attn").spec((64, 64))


def test_stops_early() -> None:
    representation = _rep("resnet18", "layer1")
    called: list[str] = []
    handles = [representation.model.get_submodule(name).register_forward_hook(
        lambda m, i, o, name=name: called.append(name)) for name in ("layer1", "layer2", "fc")]
    try:
        representation(torch.rand(1, 3, 32, 32))
    finally:
        for handle in handles:
            handle.remove()
    assert called == ["layer1"]


def test_gradients_reach_pixels() -> None:
    for representation in (_rep("resnet18", "layer2"), _rep(VIT, "blocks.1")):
        images = torch.rand(1, 3, 32, 32, requires_grad=True)
        representation(images).square().sum().backward()
        assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_input_config_from_the_pretrained_config() -> None:
    vit = _rep(VIT, "pooled")
    assert vit.input_size == (224, 224) and vit.interpolation == "bicubic"
    assert vit.mean.flatten().tolist() == [0.5, 0.5, 0.5]
    assert _rep("resnet18", "pooled").mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])
    assert not {"mean", "std"} & set(_rep("resnet18", "pooled").state_dict())  # not weights: not saved


def test_input_size_option_keeps_small_images_small() -> None:
    small = create_representation("timm:resnet18:layer3", weights="none", input_size=64)
    assert small.input_size == (64, 64) and small.spec((64, 64)) == FeatureSpec((256, 4, 4))
    images = torch.rand(2, 3, 64, 64)
    assert small(images).shape == (2, 256, 4, 4)
    assert small.config()["input_size"] == 64
    assert "input_size" not in _rep("resnet18", "layer3").config()  # earlier runs' options stay as they were
    rebuilt = create_representation("timm:resnet18:layer3", **small.config())
    assert torch.equal(rebuilt(images), small(images))
    with pytest.raises(InvalidOption, match="timm option input_size must be"):
        create_representation("timm:resnet18:layer3", weights="none", input_size=4)


# --------------------------------------------------------------------------------------------- names


def test_unknown_layer_lists_the_nearest() -> None:
    with pytest.raises(UnknownVariant) as error:
        create_representation("timm:resnet18:layer5", weights="none")
    assert str(error.value).startswith("unknown layer 'resnet18:layer5' for timm; available: resnet18:layer4")


def test_model_without_a_layer_lists_its_layers() -> None:
    with pytest.raises(UnknownVariant) as error:
        create_representation("timm:resnet18")
    assert str(error.value) == ("a layer is required for timm; available: resnet18:act1, resnet18:layer1, "
                                "resnet18:layer2, resnet18:layer3, resnet18:layer4, resnet18:pooled, resnet18:logits")


def test_unknown_model_and_no_model() -> None:
    with pytest.raises(UnknownVariant, match="unknown timm model 'resnet19'; available: resnet18"):
        create_representation("timm:resnet19:layer1")
    with pytest.raises(UnknownVariant, match="timm needs a model and a layer, e.g. timm:resnet18:layer3"):
        create_representation("timm")


def test_variants() -> None:
    assert timm_variants() == [f"resnet18:{n}" for n in ("act1", "layer1", "layer2", "layer3", "layer4", "pooled",
                                                         "logits")]
    assert timm_variants(VIT) == [f"{VIT}:blocks.{i}" for i in range(12)] + [f"{VIT}:pooled", f"{VIT}:logits"]
    assert timm_variants("convnext_atto:stag*")[:4] == [f"convnext_atto:stages.{i}" for i in range(4)]
    assert timm_variants("resnet*") == [] and timm_variants("no_such_model") == []
    assert featured_layers(nn.Sequential(nn.Conv2d(3, 3, 1))) == ["0", "logits"]


@pytest.mark.parametrize("options, message", [
    ({"weights": "imagenet"}, "weights must be pretrained, none, or the path of a .safetensors or .pth file"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"layout": "nhwc"}, "layout must be one of auto, NCHW, NHWC"),
    ({"pretrained": True}, "unknown timm option pretrained; valid options: weights, seed, layout, tag"),
    ({"tag": "no_such_tag"}, "timm option tag must be a pretrained tag of resnet18 (a1_in1k, "),
    ({"tag": "no_such_tag"}, ") or null, got 'no_such_tag'"),
])
def test_invalid_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOption) as error:
        create_timm("resnet18:layer1", **options)
    assert message in str(error.value) and "\n" not in str(error.value)


# --------------------------------------------------------------------------------------------- weights


def test_random_weights_are_seeded() -> None:
    state = torch.get_rng_state()
    first = TimmLayer("convnext_atto", "stages.0", weights="none", seed=0)
    again = create_representation("timm:convnext_atto:stages.0", **first.config())
    other = TimmLayer("convnext_atto", "stages.0", weights="none", seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert first.config() == {"weights": "none", "seed": 0, "layout": "auto", "tag": "d2_in1k"}
    images = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(first(images), again(images), atol=0, rtol=0)
    assert not torch.equal(first(images), other(images))


def test_the_default_pretrained_tag_is_recorded_and_rebuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run must rebuild the weights, input size and normalization it trained with, even if a later timm changes
    which tag a plain model name means."""
    plain = TimmLayer("resnet18", "layer3", weights="none")
    assert plain.config()["tag"] == "a1_in1k" and plain.full_name == "resnet18"
    tagged = create_representation("timm:resnet18:layer3", **{**plain.config(), "tag": "tv_in1k"})
    assert tagged.full_name == "resnet18.tv_in1k" and tagged.config()["tag"] == "tv_in1k"
    assert tagged.name == "timm:resnet18:layer3"
    built = []
    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, **kw: built.append(name) or real(name, **kw))
    create_representation("timm:resnet18:layer3", **plain.config())
    assert built == ["resnet18.a1_in1k"]  # pinned, not whatever "resnet18" means by then
    with pytest.raises(InvalidOption,
                       match=r"tag must be 'a1_in1k' \(the tag in resnet18.a1_in1k\) or null, got 'tv_in1k'"):
        TimmLayer("resnet18.a1_in1k", "layer3", weights="none", tag="tv_in1k")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_file_in_timms_key_format(tmp_path: Path, suffix: str, offline: list[str]) -> None:
    source = TimmLayer("resnet18", "layer2", weights="none", seed=7)
    path = _save(tmp_path / f"resnet18{suffix}", nn.Module.state_dict(source.model))
    loaded = create_representation("timm:resnet18:layer2", weights=str(path))
    assert loaded.weights_pending and loaded.config()["weights"] == str(path.absolute())
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded(images), source(images), atol=0, rtol=0)
    assert offline == []


def test_mismatching_weights_are_refused_with_the_keys_named(tmp_path: Path) -> None:
    state = nn.Module.state_dict(TimmLayer("resnet18", "layer1", weights="none").model)
    del state["fc.bias"]
    state["conv1.weight"] = torch.zeros(32, 3, 7, 7)
    path = _save(tmp_path / "bad.safetensors", state)
    with pytest.raises(InvalidOption) as error:
        create_representation("timm:resnet18:layer1", weights=str(path))(torch.rand(1, 3, 32, 32))
    message = str(error.value)
    assert "missing keys fc.bias" in message and "conv1.weight (32, 3, 7, 7) instead of (64, 3, 7, 7)" in message
    assert "\n" not in message


def test_offline_pretrained_is_weights_unavailable(offline: list[str]) -> None:
    representation = create_representation("timm:resnet18:layer1")  # creating and listing need no weights
    assert representation.weights_pending and representation.config()["weights"] == "pretrained"
    assert representation.spec((64, 64)).shape == (64, 56, 56)
    with pytest.raises(WeightsUnavailable) as error:
        representation(torch.rand(1, 3, 32, 32))
    message = str(error.value)
    assert "timm's pretrained weights for resnet18 could not be obtained" in message
    assert "--rep-opt weights=none" in message and "--rep-opt weights=/path/to/resnet18.safetensors" in message
    assert "\n" not in message


def test_model_without_pretrained_weights(offline: list[str]) -> None:
    with pytest.raises(WeightsUnavailable, match="timm has no pretrained weights for test_vit4"):
        create_representation("timm:test_vit4:blocks.0").load_weights()


def test_load_state_dict_supplies_the_weights(offline: list[str]) -> None:
    source = TimmLayer("resnet18", "layer1", weights="none", seed=3)
    pending = create_representation("timm:resnet18:layer1")
    pending.load_state_dict(source.state_dict())
    images = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(pending(images), source(images), atol=0, rtol=0)
    assert offline == []


# --------------------------------------------------------------------------------------------- registry and CLI


@pytest.fixture
def registered() -> Iterator[object]:
    """The ``timm`` family, from the installed entry point or registered by hand for the test."""
    yield from registered_family(repinv_timm, "timm")


def test_reps_lists_layers_with_shapes_offline(registered: object, offline: list[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from repinv.cli import cli
    from repinv.progress import console

    monkeypatch.setattr(console, "width", 240)  # the table's names are cut at a terminal's 80 columns

    for asked in ("timm:resnet18", "timm:resnet18*"):
        result = CliRunner().invoke(cli, ["reps", asked], terminal_width=200)
        assert result.exit_code == 0, result.output
        for name, shape in [("act1", "64x112x112"), ("layer3", "256x14x14"), ("pooled", "512"), ("logits", "1000")]:
            assert f"timm:resnet18:{name}" in result.output and shape in result.output
    result = CliRunner().invoke(cli, ["reps", "timm:convnext_atto"], terminal_width=200)  # not the listed example
    assert result.exit_code == 0 and "timm:convnext_atto:pooled" in result.output, result.output
    assert offline == []


def test_entry_point_declared() -> None:
    assert declared_entry_point("timm") is repinv_timm


def test_unreachable_hub_reads_only_the_cache(offline: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a network the Hub client would retry for ~45 s; an unreachable Hub puts it in offline mode at once."""
    import huggingface_hub.constants as hub

    import repinv_timm.layers as timm_layers

    seen: list[bool] = []

    def create_model(name: str, pretrained: bool = False, **kwargs: object) -> nn.Module:
        seen.append(hub.HF_HUB_OFFLINE)
        raise OSError("not in the cache")

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(timm_layers, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(timm_layers.timm, "create_model", create_model)
    with pytest.raises(WeightsUnavailable, match="OSError: not in the cache"):
        timm_layers._pretrained_state_dict("resnet18", {"hf_hub_id": "timm/resnet18.a1_in1k"})
    assert seen == [True] and hub.HF_HUB_OFFLINE is False
    monkeypatch.setattr(timm_layers, "hub_reachable", lambda timeout=3.0: True)
    with pytest.raises(WeightsUnavailable):
        timm_layers._pretrained_state_dict("resnet18", {"hf_hub_id": "timm/resnet18.a1_in1k"})
    assert seen == [True, False]


def test_hub_reachable_is_false_for_a_closed_port(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import repinv_timm.layers as timm_layers

    with socket.socket() as server:  # bound but not listening: connections are refused at once
        server.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert timm_layers.hub_reachable(timeout=1.0) is False
        server.listen()
        assert timm_layers.hub_reachable(timeout=1.0) is True


def test_the_network_runs_channels_last_with_the_same_features():
    representation = create_representation("timm:resnet18:layer2", weights="none")
    assert_channels_last_gives_the_same_features(representation, representation.model.conv1)


@pytest.mark.slow
def test_a_trained_network_from_a_local_file_classifies_real_photos(trained_lite0, tiny_imagenet):
    """The weights load through the `weights` option and the logits classify: top-5 of at least 30% on 200 training
    photos, each labelled by the WordNet id its member name starts with (n01443537_0.JPEG)."""
    from timm.data import ImageNetInfo

    from repinv.data.sources import ImageDataset

    classes = {name: index for index, name in enumerate(ImageNetInfo().label_names())}
    photos = ImageDataset(str(tiny_imagenet / "train-000.tar"), 64, train=False)
    labels = torch.tensor([classes[photos.name(i).rsplit(":", 1)[-1].split("_")[0]] for i in range(200)])
    images = torch.stack([photos[i] for i in range(200)])
    logits = create_representation("timm:tf_efficientnet_lite0:logits", weights=str(trained_lite0))
    with torch.no_grad():
        scores = torch.cat([logits(batch) for batch in images.split(50)])
    top5 = (scores.topk(5, dim=1).indices == labels[:, None]).any(1).float().mean().item()
    assert top5 >= 0.30, f"top-5 {top5:.1%} on 200 photos"
