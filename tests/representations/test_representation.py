"""The representation interface (repinv/representations/base.py): FeatureSpec, names, grayscale, the default spec,
and whose weights a run stores (a third-party representation whose options do not rebuild its weights)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

import repinv
from repinv.inversion.decoder import load_decoder
from repinv.representations.base import BT601, FeatureSpec, Representation, as_feature_spec, rgb_to_gray, split_name
from repinv.rundir import RunDir

# ------------------------------------------------------------------------------------------------------ FeatureSpec


def test_feature_spec_of_a_map_and_of_a_vector():
    feature_map, vector = FeatureSpec((31, 4, 5)), FeatureSpec((4096,))
    assert feature_map.kind == "map" and feature_map.numel == 31 * 4 * 5 and str(feature_map) == "31x4x5"
    assert vector.kind == "vector" and vector.numel == 4096 and str(vector) == "4096"


def test_feature_spec_stores_plain_ints_and_compares_by_shape():
    spec = FeatureSpec((torch.tensor(8), 2.0, 3))  # sizes from tensors or JSON floats become ints
    assert spec.shape == (8, 2, 3) and all(type(s) is int for s in spec.shape)
    assert spec == FeatureSpec((8, 2, 3)) and hash(spec) == hash(FeatureSpec((8, 2, 3)))
    with pytest.raises(AttributeError):  # frozen
        spec.shape = (1,)  # type: ignore[misc]


@pytest.mark.parametrize("shape", [(), (3, 4), (1, 2, 3, 4), (0,), (8, 0, 2), (-1, 2, 2)])
def test_feature_spec_refuses_bad_shapes(shape):
    with pytest.raises(repinv.ShapeError, match=r"\(C, h, w\) or \(D,\) with positive sizes"):
        FeatureSpec(shape)


def test_as_feature_spec_converts_sequences_and_keeps_specs():
    spec = FeatureSpec((3, 2, 2))
    assert as_feature_spec(spec) is spec
    assert as_feature_spec([3, 2, 2]) == spec and as_feature_spec((7,)) == FeatureSpec((7,))
    with pytest.raises(repinv.ShapeError):
        as_feature_spec([3, 2])


@pytest.mark.parametrize(("name", "parts"), [
    ("timm:resnet18:layer3", ("timm", "resnet18:layer3")),
    ("alexnet:fc8", ("alexnet", "fc8")),
    ("hog", ("hog", None)),
])
def test_split_name_splits_at_the_first_colon(name, parts):
    assert split_name(name) == parts


# ------------------------------------------------------------------------------------------------------- grayscale


def test_rgb_to_gray_uses_bt601_weights():
    assert BT601 == (0.299, 0.587, 0.114)
    images = torch.rand(2, 3, 5, 4)
    gray = rgb_to_gray(images)
    expected = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    assert gray.shape == (2, 1, 5, 4)
    torch.testing.assert_close(gray[:, 0], expected)
    pure = torch.eye(3).reshape(3, 3, 1, 1)  # pure red, green, blue
    torch.testing.assert_close(rgb_to_gray(pure).flatten(), torch.tensor(BT601))


def test_rgb_to_gray_leaves_its_input_unchanged_and_refuses_non_rgb():
    images = torch.rand(1, 3, 4, 4)
    before = images.clone()
    rgb_to_gray(images)
    assert torch.equal(images, before)
    with pytest.raises(repinv.ShapeError):
        rgb_to_gray(torch.rand(1, 1, 4, 4))
    with pytest.raises(repinv.ShapeError, match="floating point"):
        rgb_to_gray(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


def test_rgb_to_gray_is_differentiable():
    images = torch.rand(2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rgb_to_gray, (images,))
    rgb_to_gray(images).sum().backward()
    per_channel = images.grad.sum(dim=(0, 2, 3)) / (2 * 3 * 4)
    torch.testing.assert_close(per_channel, torch.tensor(BT601, dtype=torch.float64))


# ------------------------------------------------------------------------------------------ the interface's defaults


class _Probed(Representation):
    """Records what it is called with; no ``spec`` of its own, so the base class's runs it."""

    name = "probed"

    def __init__(self) -> None:
        super().__init__()
        self.pool = torch.nn.AvgPool2d(2)
        self.calls: list[tuple[torch.Tensor, bool]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append((images.clone(), torch.is_grad_enabled()))
        return self.pool(images).repeat(1, 2, 1, 1)


def test_default_spec_runs_once_on_a_black_image_without_gradients():
    representation = _Probed()
    spec = representation.spec((6, 10))
    assert spec == FeatureSpec((6, 3, 5)) and isinstance(spec, FeatureSpec)
    assert len(representation.calls) == 1
    probe, grad_enabled = representation.calls[0]
    assert probe.shape == (1, 3, 6, 10) and not probe.any() and probe.dtype == torch.float32
    assert not grad_enabled


def test_defaults_weights_from_options_config_and_load_weights():
    representation = _Probed()
    assert representation.weights_from_options is True
    assert representation.load_weights() is representation
    assert representation.config() == {}
    assert representation.differentiable is True and representation.per_image is False
    assert "name='probed'" in representation.extra_repr()


# ------------------------------------------------------------------------------ weights a run stores, or does not


class _RandomConv(Representation):
    """A third-party representation with random weights its options cannot rebuild (a new draw per instance)."""

    name = "random-conv"
    draws = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).draws += 1
        generator = torch.Generator().manual_seed(1000 + type(self).draws)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=4, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.copy_(torch.randn(self.conv.bias.shape, generator=generator))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(images))

    @property
    def weights_from_options(self) -> bool:
        return False


class _SeededConv(_RandomConv):
    """The same network, but with weights its options rebuild (a fixed seed): nothing to store."""

    name = "seeded-conv"

    def __init__(self, seed: int = 3) -> None:
        super().__init__()
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.copy_(torch.randn(self.conv.bias.shape, generator=generator))

    def config(self) -> dict[str, int]:
        return {"seed": self.seed}

    @property
    def weights_from_options(self) -> bool:
        return True


class _ConvPlugin:
    def __init__(self) -> None:
        self.built: list[Representation] = []

    def _factory(self, cls: type[Representation]) -> Callable[..., Representation]:
        def build(variant: str | None, **options: object) -> Representation:
            representation = cls(**options)
            self.built.append(representation)
            return representation

        return build

    @repinv.hookimpl
    def register_representations(self, register: Callable[..., None]) -> None:
        register("random-conv", self._factory(_RandomConv), description="test: random weights")
        register("seeded-conv", self._factory(_SeededConv), description="test: seeded weights")


@pytest.fixture
def conv_plugin() -> Iterator[_ConvPlugin]:
    plugin = _ConvPlugin()
    name = repinv.register_plugin(plugin, name="representation-test-convs")
    yield plugin
    repinv.unregister_plugin(name)
    assert "random-conv" not in repinv.get_registry().representations


def _train(rep: str, photo_folder, run) -> None:
    config = repinv.make_config(rep=rep, data=[str(photo_folder)], image_size=16, width=0.05, steps=2, batch_size=2,
                                workers=0, device="cpu", sample_every=100, checkpoint_every=100)
    repinv.train(config, run, show_progress=False)


def test_a_run_stores_weights_its_representations_options_cannot_rebuild(conv_plugin, photo_folder, tmp_path):
    run = tmp_path / "run"
    _train("random-conv", photo_folder, run)
    trained = conv_plugin.built[-1]
    assert RunDir(run).holds_encoder()
    stored = RunDir(run).read_encoder()
    assert set(stored) == {"conv.weight", "conv.bias"}
    assert torch.equal(stored["conv.weight"], trained.conv.weight)
    fresh = repinv.create_representation("random-conv")  # what the factory alone would build
    assert not torch.equal(fresh.conv.weight, trained.conv.weight)

    inverter = load_decoder(run, "cpu")
    assert inverter.representation is conv_plugin.built[-1] and inverter.representation is not trained
    for key, value in trained.state_dict().items():
        assert torch.equal(inverter.representation.state_dict()[key], value), key
    images = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(inverter.features(images), trained(images), rtol=0, atol=0)


def test_a_run_does_not_store_weights_its_representations_options_rebuild(conv_plugin, photo_folder, tmp_path):
    run = tmp_path / "run"
    _train("seeded-conv", photo_folder, run)
    trained = conv_plugin.built[-1]
    assert len(trained.state_dict()) == 2  # it has weights, but its options rebuild them
    assert not RunDir(run).holds_encoder() and not (run / "encoder.safetensors").exists()
    assert RunDir(run).identity() == ({"name": "seeded-conv", "options": {"seed": 3}}, (16, 16))
    inverter = load_decoder(run, "cpu")
    assert torch.equal(inverter.representation.conv.weight, trained.conv.weight)
