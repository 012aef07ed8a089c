"""Shared fixtures: small images on disk, real photos of any size, VLFeat (skipped where absent), the shared data,
a trainable test representation."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from repinv import FeatureSpec, Representation, hookimpl
from repinv.representations.networks import DeferredWeights, read_state_dict

REPO = Path(__file__).resolve().parents[1]

#: ``photos(size)``: three real photos of ``size``, ``(3, 3, H, W)`` in [0, 1] (the ``photos`` fixture).
Photos = Callable[[tuple[int, int]], torch.Tensor]


def shared_data_root() -> Path:
    """``$REPINV_SHARED_DATA``, default ``<repo>/../shared/data``."""
    return Path(os.environ.get("REPINV_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_imagenet() -> Path:
    """The shared Tiny ImageNet shards; skips (with the reason) where they are absent."""
    root = shared_data_root() / "tiny-imagenet-64"
    if not (root / "val-000.tar").is_file():
        pytest.skip(f"shared data not found at {root} (set REPINV_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def trained_lite0() -> Path:
    """The trained EfficientNet-Lite0 of ../shared/models; skips (with the reason) where it is absent."""
    path = shared_data_root().parent / "models" / "tf_efficientnet_lite0.safetensors"
    if not path.is_file():
        pytest.skip(f"the trained network is not at {path} (../shared/models)")
    return path


@pytest.fixture(scope="session")
def tiny_imagenet_batch(tiny_imagenet: Path) -> torch.Tensor:
    """The first 16 validation images of the shared Tiny ImageNet shards, ``(16, 3, 64, 64)`` in [0, 1]."""
    from repinv.data.sources import ImageDataset

    images = ImageDataset(str(tiny_imagenet / "val-000.tar"), 64, train=False)
    return torch.stack([images[i] for i in range(16)])


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve 48x40 crops of scikit-image's bundled photos, written as PNG files."""
    from skimage import data as skdata

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    sources = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()]
    for i in range(12):
        photo = sources[i % len(sources)]
        y, x = rng.integers(0, photo.shape[0] - 160), rng.integers(0, photo.shape[1] - 160)
        crop = Image.fromarray(photo[y:y + 160, x:x + 160]).resize((48, 40), Image.BILINEAR)
        crop.save(folder / f"photo-{i:02d}.png")
    return folder


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


def _load_vlfeat() -> ModuleType:
    """tests/vlfeat.py, by path, so it is found whatever pytest's import mode."""
    if "repinv_tests_vlfeat" not in sys.modules:
        spec = importlib.util.spec_from_file_location("repinv_tests_vlfeat", Path(__file__).parent / "vlfeat.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["repinv_tests_vlfeat"]


@pytest.fixture(scope="session")
def vl() -> ModuleType:
    """The ctypes wrapper of Debian's libvlfeat1 (tests/vlfeat.py); skips, with the reason, where it is absent."""
    vlfeat = _load_vlfeat()
    if not vlfeat.available():
        pytest.skip(vlfeat.MISSING)
    return vlfeat


@pytest.fixture(scope="session")
def photos() -> Photos:
    """``photos(size)``: two native-resolution crops of scikit-image photos and one downscaled whole photo."""
    from skimage import data as skdata

    astronaut, coffee, chelsea = (torch.from_numpy(f()).permute(2, 0, 1).float() / 255
                                  for f in (skdata.astronaut, skdata.coffee, skdata.chelsea))

    def make(size: tuple[int, int]) -> torch.Tensor:
        height, width = size
        whole = F.interpolate(coffee[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        return torch.stack([astronaut[:, 40:40 + height, 180:180 + width], whole.clamp(0, 1),
                            chelsea[:, 60:60 + height, 200:200 + width]])

    return make


def registered_family(plugin: ModuleType, family: str) -> Iterator[object]:
    """Yield the registry entry of ``family``: from the installed entry point, or from ``plugin`` registered by
    hand for the test (and unregistered after it) where the distribution is not installed."""
    from repinv.registry.manager import get_registry, register_plugin, unregister_plugin

    if family in get_registry().representations:
        yield get_registry().representations[family]
        return
    name = register_plugin(plugin, name=f"{plugin.__name__} (test)")
    try:
        yield get_registry().representations[family]
    finally:
        unregister_plugin(name)


def declared_entry_point(name: str) -> object:
    """What repinv's installed distribution declares as entry point ``name`` in group ``repinv``, loaded; the test
    skips (saying why) when repinv is not installed."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        points = distribution("repinv").entry_points
    except PackageNotFoundError:
        pytest.skip("repinv is not installed (pip install -e .)")
    found = [point for point in points if point.group == "repinv" and point.name == name]
    assert found, f"no entry point {name!r} in group repinv"
    return found[0].load()


class _TinyEncoder(DeferredWeights, Representation):
    """A trainable stand-in for a network layer: a seeded strided convolution, then dropout (which only evaluation
    mode switches off); option ``weights``: a local weights file, loaded on first use like AlexNet's."""

    name = "tiny-encoder"

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        self.weights = weights
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4, padding=1), torch.nn.ReLU(),
                                             torch.nn.Dropout(0.5))
        self.defer_weights(weights, rebuildable=weights is None)  # seeded: only a local file must be saved

    def fetch_weights(self, source: str) -> tuple[dict[str, torch.Tensor], str]:
        return read_state_dict(source, "tiny-encoder weights file"), f"tiny-encoder weights file {source!r}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.load_weights()
        return self.model(images)

    def spec(self, image_size: tuple[int, int]) -> FeatureSpec:  # closed form, as network layers have: no weights
        return FeatureSpec((8, (image_size[0] - 1) // 4 + 1, (image_size[1] - 1) // 4 + 1))

    def config(self) -> dict[str, str]:
        return {"weights": self.weights} if self.weights else {}


class _TinyEncoderPlugin:
    @hookimpl
    def register_representations(self, register: Callable[..., None]) -> None:
        register("tiny-encoder", lambda variant, **options: _TinyEncoder(**options), description="test encoder")


@pytest.fixture
def tiny_encoder() -> Iterator[str]:
    """Registers ``tiny-encoder``, a trainable representation with dropout (unregistered after the test)."""
    from repinv.registry.manager import register_plugin, unregister_plugin

    name = register_plugin(_TinyEncoderPlugin(), name="tiny-encoder-plugin")
    yield "tiny-encoder"
    unregister_plugin(name)


@pytest.fixture
def photos_and_a_cut_jpeg(tmp_path: Path, photo_folder: Path) -> Path:
    """Six of the photos and ``cut.jpg``, a JPEG cut in half: it is indexed, then fails when decoded."""
    import io

    folder = tmp_path / "photos-and-a-cut-jpeg"
    folder.mkdir()
    for photo in sorted(photo_folder.glob("*.png"))[:6]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    encoded = io.BytesIO()
    Image.open(photo_folder / "photo-00.png").convert("RGB").save(encoded, "JPEG")
    (folder / "cut.jpg").write_bytes(encoded.getvalue()[: len(encoded.getvalue()) // 2])
    return folder


def assert_channels_last_gives_the_same_features(representation: Representation, probe: torch.nn.Module) -> None:
    """The network's weights are channels-last (``probe``: one of its convolutions), and its features equal those
    of the same weights in the default layout to float rounding."""
    assert probe.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast = representation(images)
        representation.model.to(memory_format=torch.contiguous_format)
        plain = representation(images)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    """An uncompressed tar shard holding ``members`` (name -> bytes) in order."""
    import io
    import tarfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path
