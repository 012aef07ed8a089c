"""The AlexNet plugin: layer outputs as the paper defines them, early stopping, weights, listing without downloads.

No pretrained weights are available where the tests run: every test uses random weights (``weights=none``) or a
local file, and the ImageNet path is exercised with torchvision's download replaced (failing, or writing a file).
"""

from __future__ import annotations

import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import assert_channels_last_gives_the_same_features, declared_entry_point, registered_family
from torch import nn

import repinv_alexnet
from repinv.errors import InvalidOption, ShapeError, UnknownVariant, WeightsUnavailable
from repinv.registry.factories import create_representation
from repinv.representations.base import FeatureSpec
from repinv_alexnet.alexnet import INPUT_SIZE, LAYERS, AlexNetLayer, create_alexnet

#: The paper's layers with torchvision's AlexNet feature shapes at its 224x224 input.
SHAPES: dict[str, tuple[int, ...]] = {
    "conv1": (64, 27, 27), "conv2": (192, 13, 13), "conv3": (384, 13, 13), "conv4": (256, 13, 13),
    "conv5": (256, 6, 6), "fc6": (4096,), "fc7": (4096,), "fc8": (1000,),
}


@pytest.fixture(scope="module")
def base() -> AlexNetLayer:
    """A random-weight AlexNet (seed 0)."""
    return AlexNetLayer("conv1", weights="none")


def _twin(base: AlexNetLayer, layer: str) -> AlexNetLayer:
    """``base``'s network read at another layer: pending weights replaced through load_state_dict (no random
    initialization of 61M parameters again)."""
    twin = AlexNetLayer(layer)
    twin.load_state_dict(base.state_dict())
    return twin


@pytest.fixture(scope="module")
def layers(base: AlexNetLayer) -> dict[str, AlexNetLayer]:
    """One random-weight representation per layer, all the same network (as weights=none, seed 0 gives)."""
    return {layer: _twin(base, layer) for layer in LAYERS}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """No network and an empty torch cache: torchvision's download fails with URLError; returns the URLs tried."""
    tried: list[str] = []

    def fail(url: str, *args: object, **kwargs: object) -> None:
        tried.append(url)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    return tried


def _save_pth(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save(state, path)
    return path


def _save_safetensors(path: Path, state: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path


# --------------------------------------------------------------------------------------------- layers and shapes


def test_aliases_map_to_the_papers_modules(base: AlexNetLayer) -> None:
    assert LAYERS == {"conv1": "features.2", "conv2": "features.5", "conv3": "features.7", "conv4": "features.9",
                      "conv5": "features.12", "fc6": "classifier.2", "fc7": "classifier.5", "fc8": "classifier.6"}
    model = base.model
    kinds = {layer: type(model.get_submodule(module)) for layer, module in LAYERS.items()}
    # After pooling (conv1, conv2, conv5), after ReLU (conv3, conv4, fc6, fc7), the logits (fc8).
    assert kinds == {"conv1": nn.MaxPool2d, "conv2": nn.MaxPool2d, "conv3": nn.ReLU, "conv4": nn.ReLU,
                     "conv5": nn.MaxPool2d, "fc6": nn.ReLU, "fc7": nn.ReLU, "fc8": nn.Linear}


@pytest.mark.parametrize("layer", list(LAYERS))
def test_shapes_equal_spec(layers: dict[str, AlexNetLayer], layer: str) -> None:
    representation = layers[layer]
    for size in [(64, 64), (100, 80)]:
        features = representation(torch.rand(2, 3, *size))
        assert features.shape == (2, *SHAPES[layer])
        assert representation.spec(size) == FeatureSpec(SHAPES[layer])
        assert torch.isfinite(features).all()
    assert representation.spec((224, 224)).kind == ("vector" if layer.startswith("fc") else "map")


def test_native_size_is_not_resized(layers: dict[str, AlexNetLayer]) -> None:
    images = torch.rand(1, 3, *INPUT_SIZE)
    representation = layers["conv2"]
    normalized = (images - representation.mean) / representation.std
    expected = representation.model.features[:6](normalized)
    torch.testing.assert_close(representation(images), expected, atol=1e-5, rtol=1e-5)


def test_stops_early(layers: dict[str, AlexNetLayer]) -> None:
    model = layers["conv1"].model  # the same (unmodified) structure as every other layer's
    called: list[str] = []
    handles = [module.register_forward_hook(lambda m, i, o, name=name: called.append(name))
               for name, module in model.named_modules() if name]
    try:
        layers["conv1"](torch.rand(1, 3, 32, 32))
    finally:
        for handle in handles:
            handle.remove()
    assert called == ["features.0", "features.1", "features.2"]  # conv, ReLU, pool; nothing else ran
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())  # hook removed


def test_fc6_runs_no_later_layers(layers: dict[str, AlexNetLayer]) -> None:
    model = layers["fc6"].model
    called: list[str] = []
    handles = [model.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: called.append(name))
               for name in ("classifier.2", "classifier.3", "classifier.4", "classifier.6")]
    try:
        layers["fc6"](torch.rand(1, 3, 32, 32))
    finally:
        for handle in handles:
            handle.remove()
    assert called == ["classifier.2"]


def test_raw_module_names(base: AlexNetLayer, layers: dict[str, AlexNetLayer]) -> None:
    images = torch.rand(2, 3, 48, 40)
    raw = create_representation("alexnet:features.7")
    assert raw.name == "alexnet:features.7" and raw.module_name == "features.7"
    raw.load_state_dict(base.state_dict())
    torch.testing.assert_close(raw(images), layers["conv3"](images), atol=0, rtol=0)
    before_relu = _twin(base, "features.6")(images)  # conv3 before its ReLU
    assert (before_relu < 0).any()
    torch.testing.assert_close(before_relu.clamp_min(0), layers["conv3"](images), atol=0, rtol=0)
    assert create_representation("alexnet:classifier.0").spec((64, 64)).shape == (9216,)


def test_unknown_and_missing_layers() -> None:
    with pytest.raises(UnknownVariant) as error:
        create_representation("alexnet:fc9")
    message = str(error.value)
    assert message.startswith("unknown layer 'fc9' for alexnet; available: fc8")
    with pytest.raises(UnknownVariant, match="a layer is required for alexnet; available: conv1, conv2"):
        create_representation("alexnet")


@pytest.mark.parametrize("options, message", [
    ({"weights": "banana"}, "weights must be imagenet, none, or the path of a .safetensors or .pth file"),
    ({"weights": 3}, "got 3"),
    ({"seed": "x"}, "seed must be an integer"),
    ({"seed": True}, "seed must be an integer"),
    ({"weight": "none"}, "unknown alexnet option weight; valid options: weights, seed"),
])
def test_invalid_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidOption) as error:
        create_alexnet("conv1", **options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_images_raise(layers: dict[str, AlexNetLayer]) -> None:
    with pytest.raises(ShapeError):
        layers["conv1"](torch.rand(3, 32, 32))
    with pytest.raises(ShapeError):
        layers["conv1"](torch.rand(1, 1, 32, 32))


def test_gradients_reach_pixels(base: AlexNetLayer, layers: dict[str, AlexNetLayer]) -> None:
    for layer in ("conv1", "fc8"):
        images = torch.rand(2, 3, 40, 40, requires_grad=True)
        layers[layer](images).square().sum().backward()
        assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    # Gradients match finite differences (double precision; random images sit on no ReLU or pooling kink).
    conv1 = _twin(base, "conv1").double()
    small = torch.rand(1, 3, 12, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0),
                       requires_grad=True)
    assert torch.autograd.gradcheck(conv1, (small,), eps=1e-6, atol=1e-4, rtol=1e-3, fast_mode=True)


# --------------------------------------------------------------------------------------------- weights


def test_random_weights_are_seeded_and_leave_the_global_generator_alone() -> None:
    state = torch.get_rng_state()
    first, again = AlexNetLayer("fc8", weights="none", seed=0), AlexNetLayer("fc8", weights="none", seed=0)
    other = AlexNetLayer("fc8", weights="none", seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    weight = "model.features.0.weight"
    assert torch.equal(first.state_dict()[weight], again.state_dict()[weight])
    assert not torch.equal(first.state_dict()[weight], other.state_dict()[weight])
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(first(images), again(images), atol=0, rtol=0)
    assert first.config() == {"weights": "none", "seed": 0}


def test_config_rebuilds() -> None:
    representation = create_representation("alexnet:conv5", weights="none", seed=3)
    rebuilt = create_representation(representation.name, **representation.config())
    images = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(rebuilt(images), representation(images), atol=0, rtol=0)
    assert (representation.name, representation.differentiable, representation.per_image) == \
        ("alexnet:conv5", True, False)
    assert "features.12" in repr(representation)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_file(base: AlexNetLayer, tmp_path: Path, suffix: str, offline: list[str]) -> None:
    source = _twin(base, "conv2")
    state = nn.Module.state_dict(source.model)  # torchvision's key format
    save = _save_safetensors if suffix == ".safetensors" else _save_pth
    path = save(tmp_path / f"alexnet{suffix}", state)
    loaded = create_representation("alexnet:conv2", weights=str(path))
    assert loaded.weights_pending and loaded.config()["weights"] == str(path.absolute())
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded(images), source(images), atol=0, rtol=0)
    assert not loaded.weights_pending and offline == []


def test_wrapped_checkpoint_with_module_prefix(base: AlexNetLayer, tmp_path: Path) -> None:
    source = _twin(base, "fc6")
    wrapped = {"epoch": torch.tensor(3), "state_dict": {f"module.{k}": v for k, v in
                                                         nn.Module.state_dict(source.model).items()}}
    path = _save_pth(tmp_path / "checkpoint.pth", wrapped)
    images = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(AlexNetLayer("fc6", weights=str(path))(images), source(images), atol=0, rtol=0)


def test_mismatching_weights_are_refused_with_the_keys_named(base: AlexNetLayer, tmp_path: Path) -> None:
    state = dict(nn.Module.state_dict(base.model))
    del state["classifier.6.bias"]
    state["features.0.weight"] = torch.zeros(96, 3, 11, 11)  # CaffeNet's conv1
    state["extra.weight"] = torch.zeros(1)
    representation = AlexNetLayer("conv1", weights=str(_save_safetensors(tmp_path / "bad.safetensors", state)))
    with pytest.raises(InvalidOption) as error:
        representation(torch.rand(1, 3, 32, 32))
    message = str(error.value)
    assert "missing keys classifier.6.bias" in message and "unexpected keys extra.weight" in message
    assert "features.0.weight (96, 3, 11, 11) instead of (64, 3, 11, 11)" in message and "\n" not in message
    with pytest.raises(InvalidOption, match="not found"):
        AlexNetLayer("conv1", weights=str(tmp_path / "missing.pth")).load_weights()
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidOption, match="cannot read alexnet weights file"):
        AlexNetLayer("conv1", weights=str(tmp_path / "junk.pth")).load_weights()


def test_offline_imagenet_names_both_alternatives(offline: list[str]) -> None:
    representation = create_representation("alexnet:fc8")  # creating and listing need no weights
    assert representation.weights_pending and representation.config()["weights"] == "imagenet"
    assert representation.spec((64, 64)).shape == (1000,)
    assert offline == []
    with pytest.raises(WeightsUnavailable) as error:
        representation(torch.rand(1, 3, 32, 32))
    message = str(error.value)
    assert "--rep-opt weights=none" in message and "--rep-opt weights=/path/to/alexnet.safetensors" in message
    assert ".pth" in message and "\n" not in message
    assert offline and offline[0].startswith("https://download.pytorch.org/models/alexnet")
    with pytest.raises(WeightsUnavailable):
        representation.state_dict()  # a state dict never holds the placeholder weights


def test_imagenet_weights_come_through_torchvisions_cache(base: AlexNetLayer, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    """The real loading path, with the download replaced by writing a known state dict where torchvision caches."""
    reference = _twin(base, "conv4")
    downloads: list[str] = []

    def fake_download(url: str, destination: str, *args: object, **kwargs: object) -> None:
        downloads.append(url)
        torch.save(nn.Module.state_dict(reference.model), destination)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    images = torch.rand(2, 3, 32, 32)
    first = create_representation("alexnet:conv4")
    torch.testing.assert_close(first(images), reference(images), atol=0, rtol=0)
    second = create_representation("alexnet:conv4", weights="imagenet")
    torch.testing.assert_close(second(images), reference(images), atol=0, rtol=0)
    assert len(downloads) == 1  # the second came from the cache
    assert list((tmp_path / "hub" / "checkpoints").iterdir())


def test_load_state_dict_supplies_the_weights(base: AlexNetLayer, offline: list[str]) -> None:
    """A run's encoder.safetensors replaces pending ImageNet weights: nothing is downloaded afterwards."""
    source = _twin(base, "conv3")
    pending = create_representation("alexnet:conv3")
    parent = nn.ModuleDict({"encoder": pending})  # loading through a parent module counts too
    parent.load_state_dict({f"encoder.{k}": v for k, v in source.state_dict().items()})
    assert not pending.weights_pending
    images = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(pending(images), source(images), atol=0, rtol=0)
    assert offline == []


def test_weights_loaded_in_inference_mode_train_afterwards(base: AlexNetLayer, tmp_path: Path) -> None:
    source = base
    path = _save_safetensors(tmp_path / "w.safetensors", nn.Module.state_dict(source.model))
    representation = AlexNetLayer("conv1", weights=str(path))
    with torch.inference_mode():
        representation(torch.rand(1, 3, 32, 32))
    representation(torch.rand(1, 3, 32, 32)).sum().backward()
    assert representation.model.features[0].weight.grad is not None


# --------------------------------------------------------------------------------------------- registry and CLI


@pytest.fixture
def registered() -> Iterator[object]:
    """The ``alexnet`` family, from the installed entry point or registered by hand for the test."""
    yield from registered_family(repinv_alexnet, "alexnet")


def test_listed_layers(registered: object) -> None:
    from repinv.registry.factories import list_representations

    assert list_representations("alexnet") == sorted(f"alexnet:{layer}" for layer in LAYERS)


def test_reps_lists_eight_layers_without_downloading(registered: object, offline: list[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from repinv.cli import cli
    from repinv.progress import console

    monkeypatch.setattr(console, "width", 240)  # the table's names are cut at a terminal's 80 columns

    result = CliRunner().invoke(cli, ["reps", "alexnet"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for layer, shape in SHAPES.items():
        assert f"alexnet:{layer}" in result.output and "x".join(map(str, shape)) in result.output
    assert "alexnet:features" not in result.output  # raw module names work but are not listed
    assert offline == []


def test_entry_point_declared() -> None:
    assert declared_entry_point("alexnet") is repinv_alexnet


def test_train_offline_fails_in_one_line_before_making_the_run(registered: object, offline: list[str],
                                                               tmp_path: Path) -> None:
    from click.testing import CliRunner

    from repinv.cli import cli

    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--rep", "alexnet:fc8", "--data", "builtin", "--steps", "1",
                                      "--out", str(run), "--quiet"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--rep-opt weights=none" in errors[0]  # (torch.hub adds a "Downloading" line)
    assert "Traceback" not in result.output
    assert not run.exists()  # the weights are fetched before the run directory is made
    assert offline and offline[0].startswith("https://download.pytorch.org/models/alexnet")


def test_the_network_runs_channels_last_with_the_same_features():
    representation = create_representation("alexnet:conv3", weights="none")
    assert_channels_last_gives_the_same_features(representation, representation.model.features[0])
