"""Several layers of one network cached from a single forward pass: one cache per layer, each equal to its own."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from repinv.cli import cli
from repinv.data.cache import FeatureCache, cache_features, cache_folder_name
from repinv.errors import InvalidOption, ShapeError
from repinv.registry.factories import create_representation
from repinv.representations.base import Representation, features_together
from repinv.representations.networks import capture, capture_many, record_outputs

RESNET = ["timm:resnet18:layer1", "timm:resnet18:layer2"]
ALEXNET = ["alexnet:conv2", "alexnet:conv4"]
SETTINGS = {"image_size": 32, "workers": 0, "show_progress": False}


def _create(names: Sequence[str]) -> list[Representation]:
    return [create_representation(name, weights="none") for name in names]


def _count_passes(representations: Sequence[Representation]) -> list[int]:
    """A counter of forward calls of the first leaf module of every representation's network (one cell, shared)."""
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    for representation in representations:
        model = representation.model
        assert isinstance(model, nn.Module)
        first = next(module for module in model.modules() if not list(module.children()))
        first.register_forward_hook(hook)
    return calls


def _same(cache: FeatureCache, reference: FeatureCache) -> None:
    assert cache.manifest["representation"] == reference.manifest["representation"]
    assert cache.manifest["feature_shape"] == reference.manifest["feature_shape"]
    assert len(cache) == len(reference)
    for i in range(len(cache)):
        image, features = cache[i]
        expected_image, expected = reference[i]
        assert torch.equal(image, expected_image)
        assert torch.equal(features, expected), f"{cache.path} item {i}"


@pytest.mark.parametrize("names", [RESNET, ALEXNET], ids=["timm", "alexnet"])
def test_one_pass_caches_equal_per_layer_caches(names, photo_folder, tmp_path):
    together = _create(names)
    calls = _count_passes(together)
    caches = cache_features(together, str(photo_folder), tmp_path / "together", shard_size=5, batch_size=5,
                            **SETTINGS)
    assert calls[0] == 3  # 12 images in batches of 5: one pass per batch, for all the layers
    assert [cache.path for cache in caches] == [tmp_path / "together" / cache_folder_name(n) for n in names]
    for name, cache in zip(names, caches):
        alone = create_representation(name, weights="none")
        reference = cache_features(alone, str(photo_folder), tmp_path / cache_folder_name(name), shard_size=5,
                                   batch_size=5, **SETTINGS)
        _same(cache, reference)


def test_folder_names_are_safe():
    assert cache_folder_name("timm:tf_efficientnet_lite0:blocks.1") == "timm-tf_efficientnet_lite0-blocks.1"
    assert cache_folder_name("alexnet:conv5") == "alexnet-conv5"


@pytest.mark.parametrize("names", [RESNET + ["timm:resnet18:conv1"],
                                   ["timm:resnet18:logits", RESNET[1], "timm:resnet18:pooled", "timm:resnet18:fc"]],
                         ids=["modules", "with-the-head"])
def test_forward_together_equals_forward_exactly(names):
    representations = _create(names)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    calls = _count_passes(representations)
    with torch.no_grad():
        shared = representations[0].forward_together(images, representations[1:])
        assert shared is not None
        assert calls[0] == 1  # one pass of the body for every layer, the head included
        for representation, features in zip(representations, shared):
            assert torch.equal(features, representation(images))


def test_forward_together_refuses_what_it_cannot_share():
    resnet, other_seed = _create(RESNET[:1])[0], create_representation("timm:resnet18:layer2", weights="none", seed=1)
    images = torch.rand(2, 3, 32, 32)
    assert resnet.forward_together(images, [other_seed]) is None
    assert resnet.forward_together(images, [create_representation("timm:resnet18:logits", weights="none",
                                                                   seed=1)]) is None
    assert resnet.forward_together(images, _create(ALEXNET[:1])) is None
    changed = create_representation("timm:resnet18:layer2", weights="none")
    with torch.no_grad():
        next(iter(changed.parameters())).add_(1)  # fine-tuned: same options, other weights
    assert resnet.forward_together(images, [changed]) is None
    alexnet = _create(ALEXNET)
    assert alexnet[0].forward_together(images, [create_representation("alexnet:conv4", weights="none", seed=3)]) \
        is None


def test_features_together_falls_back_to_each_representation():
    representations = _create([RESNET[0], ALEXNET[0], RESNET[1]])
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    calls = _count_passes(representations)
    with torch.no_grad():
        together = features_together(representations, images)
        assert calls[0] == 3
        for representation, features in zip(representations, together):
            assert torch.equal(features, representation(images))


def test_capture_many_leaves_the_model_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(1, 3, 8, 8))
    before = copy.deepcopy(model.state_dict())
    inputs = torch.rand(2, 3, 8, 8)
    last_calls = [0]
    model[5].register_forward_hook(lambda *_: last_calls.__setitem__(0, last_calls[0] + 1))
    outputs = capture_many(model, [model[3], model[1], model[3]], inputs)
    assert last_calls[0] == 0  # stopped after the last requested module
    assert torch.equal(outputs[0], capture(model, model[3], inputs))
    assert torch.equal(outputs[1], capture(model, model[1], inputs))
    assert outputs[2] is outputs[0]
    assert not model._forward_hooks and all(not m._forward_hooks for m in list(model)[:5])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert capture_many(model, [], inputs) == []


def test_record_outputs_runs_to_the_end():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    inputs = torch.rand(2, 3, 8, 8)
    result, (relu, conv) = record_outputs(model, [model[1], model[0]], lambda: model(inputs))
    assert torch.equal(result, model(inputs))
    assert torch.equal(relu, capture(model, model[1], inputs)) and torch.equal(conv, capture(model, model[0], inputs))
    assert not model._forward_hooks and all(not m._forward_hooks for m in model)
    with pytest.raises(ShapeError, match="never reached"):
        record_outputs(model, [model[3]], lambda: model[0](inputs))


def test_capture_many_names_a_module_never_called():
    class Partly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    model = Partly()
    with pytest.raises(ShapeError, match="unused"):
        capture_many(model, [model.used, model.unused], torch.rand(2, 3))
    assert not model.unused._forward_hooks and not model.used._forward_hooks


def test_mixed_networks_fall_back_and_stay_correct(photo_folder, tmp_path):
    names = [RESNET[0], ALEXNET[0], RESNET[1]]
    caches = cache_features(_create(names), str(photo_folder), tmp_path / "mixed", **SETTINGS)
    for name, cache in zip(names, caches):
        reference = cache_features(create_representation(name, weights="none"), str(photo_folder),
                                   tmp_path / cache_folder_name(name), **SETTINGS)
        _same(cache, reference)


def test_resuming_recomputes_only_missing_shards(photo_folder, tmp_path):
    caches = cache_features(RESNET, str(photo_folder), tmp_path / "c", rep_options={"weights": "none"},
                            shard_size=5, **SETTINGS)
    kept = {path: path.read_bytes() for cache in caches for path in sorted(cache.path.glob("shard-*"))}
    (caches[1].path / "shard-00001.safetensors").unlink()
    resumed = cache_features(RESNET, str(photo_folder), tmp_path / "c", rep_options={"weights": "none"},
                             shard_size=5, **SETTINGS)
    assert {path: path.read_bytes() for cache in resumed for path in sorted(cache.path.glob("shard-*"))} == kept


def test_per_image_representations_are_refused_with_others(photo_folder, tmp_path):
    with pytest.raises(InvalidOption, match="per image"):
        cache_features(["sift", "hog"], str(photo_folder), tmp_path / "c", **SETTINGS)
    with pytest.raises(InvalidOption, match="share a cache folder"):
        cache_features(["hog", "hog"], str(photo_folder), tmp_path / "c", **SETTINGS)
    assert not (tmp_path / "c").exists()


def test_single_representation_keeps_its_layout(photo_folder, tmp_path):
    cache = cache_features("hog", str(photo_folder), tmp_path / "one", **SETTINGS)
    assert isinstance(cache, FeatureCache) and cache.path == tmp_path / "one"
    listed = cache_features(["hog"], str(photo_folder), tmp_path / "list", **SETTINGS)
    assert [c.path for c in listed] == [tmp_path / "list" / "hog"]


def test_cli_writes_one_cache_per_rep(photo_folder, tmp_path: Path):
    out = tmp_path / "caches"
    result = CliRunner().invoke(cli, ["features", "--rep", ALEXNET[0], "--rep", ALEXNET[1], "--rep-opt",
                                      "weights=none", "--data", str(photo_folder), "--out", str(out),
                                      "--image-size", "32", "--workers", "0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for name in ALEXNET:
        folder = out / cache_folder_name(name)
        assert str(folder) in result.output.replace("\n", "")
        assert FeatureCache(folder).rep == name and len(FeatureCache(folder)) == 12
