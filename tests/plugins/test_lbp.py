"""The built-in LBP plugin: agreement with VLFeat, bit order, shapes, batching, options, devices, registration."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest
import torch
from conftest import Photos, declared_entry_point, registered_family

import repinv_lbp
from repinv.errors import InvalidOption, ShapeError, UnknownVariant
from repinv.representations.base import FeatureSpec, rgb_to_gray
from repinv_lbp import lbp as lbp_module
from repinv_lbp.lbp import LBP, NEIGHBOURS, create_lbp, lbp_codes, lbp_grid_size, lbp_uniform, uniform_mapping

TOLERANCE = 1e-4  # max abs difference to VLFeat; float rounding alone gives ~1e-7
SIZES = [(64, 64), (61, 61), (100, 77), (128, 96), (37, 53)]


def max_difference_to_vlfeat(vl: ModuleType, images: torch.Tensor, cell_size: int = 16) -> float:
    """Ours on the batch vs VLFeat on each image, both fed the same float32 gray image."""
    ours = create_lbp(cell_size=cell_size)(images)
    gray = rgb_to_gray(images)[:, 0].numpy()
    worst = 0.0
    for i in range(len(images)):
        reference = vl.lbp(gray[i], cell_size=cell_size)
        assert ours[i].shape == reference.shape
        worst = max(worst, float(np.abs(ours[i].numpy() - reference).max()))
    return worst


# --------------------------------------------------------------------------------------------- VLFeat agreement


@pytest.mark.parametrize("cell_size", [16, 8, 5, 7])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_matches_vlfeat_on_photos(vl: ModuleType, photos: Photos, size: tuple[int, int],
                                  cell_size: int) -> None:
    difference = max_difference_to_vlfeat(vl, photos(size), cell_size=cell_size)
    print(f"max |ours - VLFeat| at {size[0]}x{size[1]}, cell {cell_size}: {difference:.2e}")
    assert difference < TOLERANCE


@pytest.mark.parametrize("cell_size, size", [(1, (9, 7)), (2, (11, 10)), (3, (3, 3)), (3, (20, 13)),
                                             (16, (16, 16)), (16, (31, 17)), (23, (40, 46)), (40, (41, 77))])
def test_matches_vlfeat_edge_geometries(vl: ModuleType, photos: Photos, cell_size: int,
                                        size: tuple[int, int]) -> None:
    # Tiny cells, one cell per image, the largest image that still has one cell, cells over half the image.
    assert max_difference_to_vlfeat(vl, photos(size), cell_size=cell_size) < TOLERANCE


def _synthetic() -> torch.Tensor:
    """Images full of exact ties: stripes, ramps, checkerboards, flat areas, quantized noise."""
    y, x = torch.meshgrid(torch.arange(40.0), torch.arange(36.0), indexing="ij")
    noise = torch.from_numpy(np.random.default_rng(0).integers(0, 4, (40, 36))).float() / 4
    gray = torch.stack([(y % 4 < 2).float(), (x % 3 < 1).float(), ((x + y) % 5) / 5, ((x - y) % 7) / 7,
                        (x + y) / 80, ((x + y) % 2).float(), noise, torch.full_like(x, 0.5)])
    return gray[:, None].expand(-1, 3, -1, -1).contiguous()


@pytest.mark.parametrize("cell_size", [4, 8, 16])
def test_matches_vlfeat_on_ties(vl: ModuleType, cell_size: int) -> None:
    assert max_difference_to_vlfeat(vl, _synthetic(), cell_size=cell_size) < TOLERANCE


def test_matches_vlfeat_on_tiny_imagenet(vl: ModuleType, tiny_imagenet_batch: torch.Tensor) -> None:
    batch = tiny_imagenet_batch
    for cell_size in (16, 8):
        assert max_difference_to_vlfeat(vl, batch, cell_size=cell_size) < TOLERANCE
        assert max_difference_to_vlfeat(vl, batch[:, :, 2:, 5:], cell_size=cell_size) < TOLERANCE  # 62x59


def _one_bright_neighbour(bit: int) -> torch.Tensor:
    """A 3x3 RGB image, dark but for neighbour ``bit`` of the centre."""
    image = torch.zeros(1, 3, 3, 3)
    dy, dx = NEIGHBOURS[bit]
    image[..., 1 + dy, 1 + dx] = 1.0
    return image


@pytest.mark.parametrize("bit", range(8))
def test_bit_order_matches_vlfeat(vl: ModuleType, bit: int) -> None:
    # A 3x3 image with cell_size 3 is one cell holding the centre's pattern alone, with weight 1.
    image = _one_bright_neighbour(bit)
    reference = vl.lbp(rgb_to_gray(image)[0, 0].numpy(), cell_size=3)
    assert reference.shape == (58, 1, 1)
    assert int(reference[:, 0, 0].argmax()) == 7 * bit  # a run of one 1 starting at the bit
    np.testing.assert_allclose(LBP(cell_size=3)(image)[0].numpy(), reference, atol=1e-7)


# --------------------------------------------------------------------------------------------- patterns


def test_bit_order() -> None:
    """Bit ``k`` is neighbour ``k`` of E, SE, S, SW, W, NW, N, NE (rows grow downwards), as VLFeat scans them."""
    assert NEIGHBOURS == ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))
    for bit in range(8):
        gray = rgb_to_gray(_one_bright_neighbour(bit))[:, 0]
        assert lbp_codes(gray).tolist() == [[[1 << bit]]]
        features = LBP(cell_size=3)(_one_bright_neighbour(bit))
        assert features.shape == (1, 58, 1, 1)
        assert int(features[0, :, 0, 0].argmax()) == 7 * bit and float(features.max()) == 1.0


def test_codes_compare_strictly() -> None:
    gray = torch.tensor([[[0.5, 0.5, 0.7], [0.5, 0.5, 0.3], [0.5, 0.5, 0.5]]])
    assert lbp_codes(gray).tolist() == [[[1 << 7]]]  # only NE is brighter; equal neighbours are not


def test_uniform_mapping() -> None:
    mapping = uniform_mapping().tolist()
    assert len(mapping) == 256 and set(mapping) == set(range(58))
    assert mapping[0x00] == mapping[0xFF] == 56
    for string, bin_ in enumerate(mapping):
        rotated = (string >> 1) | ((string & 1) << 7)
        transitions = bin(string ^ rotated).count("1")
        if transitions == 2:  # a single circular run of ones: bin 7 * start + length - 1
            length = bin(string).count("1")
            start = next(i for i in range(8) if string >> i & 1 and not string >> ((i - 1) % 8) & 1)
            assert bin_ == 7 * start + length - 1, hex(string)
        elif transitions > 2:
            assert bin_ == 57, hex(string)
    assert sorted(mapping).count(57) == 256 - 58


def test_features_are_hellinger_normalized(photos: Photos) -> None:
    features = LBP(cell_size=8)(photos((61, 53)))
    assert bool((features >= 0).all())
    torch.testing.assert_close(features.square().sum(1), torch.ones(3, 7, 6), atol=1e-5, rtol=0)


def test_flat_image() -> None:
    features = LBP()(torch.full((1, 3, 32, 32), 0.3))  # every pattern is 0x00: all mass in bin 56
    expected = torch.zeros(1, 58, 2, 2)
    expected[:, 56] = 1.0
    torch.testing.assert_close(features, expected, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------- shapes and batches


@pytest.mark.parametrize("cell_size", [1, 3, 5, 8, 16])
def test_shape_and_spec(cell_size: int) -> None:
    lbp = LBP(cell_size=cell_size)
    for height, width in [(64, 64), (61, 61), (37, 53), (16, 17), (100, 77), (3, 5)]:
        if min(height, width) < max(3, cell_size):
            continue
        rows, columns = height // cell_size, width // cell_size
        features = lbp(torch.rand(2, 3, height, width))
        assert features.shape == (2, 58, rows, columns)
        assert features.dtype == torch.float32
        assert lbp.spec((height, width)) == FeatureSpec((58, rows, columns))
        assert lbp_grid_size((height, width), cell_size) == (rows, columns)
    assert LBP().spec((64, 64)).shape == (58, 4, 4)
    assert LBP().spec((63, 64)).shape == (58, 3, 4)  # not HOG's rounding: a partial cell never counts


def test_too_small_images_raise() -> None:
    with pytest.raises(ShapeError, match="at least 16x16"):
        LBP()(torch.rand(1, 3, 15, 40))
    with pytest.raises(ShapeError, match="at least 3x3"):
        LBP(cell_size=1)(torch.rand(1, 3, 2, 8))
    with pytest.raises(ShapeError):
        LBP().spec((64, 8))
    with pytest.raises(ShapeError):
        LBP()(torch.rand(1, 64, 64))
    with pytest.raises(ShapeError):
        LBP()(torch.rand(1, 1, 64, 64))


def test_batch_equals_single_images(monkeypatch: pytest.MonkeyPatch, photos: Photos) -> None:
    noise = torch.rand(2, 3, 61, 53, generator=torch.Generator().manual_seed(0))
    images = torch.cat([photos((61, 53)), noise])
    lbp = LBP(cell_size=8)
    singles = torch.cat([lbp(image[None]) for image in images])
    torch.testing.assert_close(lbp(images), singles, atol=1e-6, rtol=0)
    monkeypatch.setattr(lbp_module, "_CHUNK_PIXELS", 61 * 53 * 2)  # force several chunks
    torch.testing.assert_close(lbp(images), singles, atol=1e-6, rtol=0)


def test_not_differentiable() -> None:
    lbp = LBP()
    assert lbp.differentiable is False
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    features = lbp(images)
    assert not features.requires_grad  # comparisons: nothing to differentiate
    assert lbp_uniform(rgb_to_gray(images)[:, 0]).requires_grad is False


def test_inference_mode_then_normal_use() -> None:
    # Cached per-size tensors created under inference mode must stay usable outside it.
    lbp = LBP(cell_size=4)
    with torch.inference_mode():
        inside = lbp(torch.rand(2, 3, 24, 20))
    assert inside.shape == (2, 58, 6, 5)
    assert lbp(torch.rand(2, 3, 24, 20)).shape == (2, 58, 6, 5)


# --------------------------------------------------------------------------------------------- options, devices


@pytest.mark.parametrize("options, message", [
    ({"cell_size": "banana"}, "lbp option cell_size must be a positive integer, got 'banana'"),
    ({"cell_size": 0}, "cell_size must be a positive integer, got 0"),
    ({"cell_size": -3}, "got -3"),
    ({"cell_size": 2.5}, "got 2.5"),
    ({"cell_size": True}, "got True"),
    ({"cellsize": 8}, "unknown lbp option cellsize; valid options: cell_size"),
    ({"cellsize": 8, "radius": 2}, "unknown lbp options cellsize, radius; valid options: cell_size"),
])
def test_invalid_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidOption) as error:
        create_lbp(None, **options)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_no_variants() -> None:
    with pytest.raises(UnknownVariant):
        create_lbp("big")


def test_attributes_and_config() -> None:
    lbp = create_lbp(None, cell_size=8)
    assert (lbp.name, lbp.differentiable, lbp.per_image) == ("lbp", False, False)
    assert lbp.config() == {"cell_size": 8}
    assert create_lbp().config() == {"cell_size": 16}
    rebuilt = create_lbp(None, **lbp.config())
    images = torch.rand(2, 3, 33, 30)
    torch.testing.assert_close(rebuilt(images), lbp(images), atol=0, rtol=0)
    assert "cell_size=8" in repr(lbp)


def test_dtypes_and_layouts() -> None:
    images = torch.rand(2, 3, 40, 36, generator=torch.Generator().manual_seed(0))
    lbp = LBP(cell_size=8)
    reference = lbp(images)
    features = lbp(images.double())
    assert features.dtype == torch.float64
    torch.testing.assert_close(features.float(), reference, atol=1e-4, rtol=0)
    half = lbp(images.half())  # computed in float32, returned in the input's dtype
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    channels_last = images.to(memory_format=torch.channels_last)
    torch.testing.assert_close(lbp(channels_last), reference, atol=0, rtol=0)
    strided = torch.rand(2, 3, 40, 72)[..., ::2]
    torch.testing.assert_close(lbp(strided), lbp(strided.contiguous()), atol=0, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(photos: Photos) -> None:
    images = torch.cat([photos((40, 36)), _synthetic()])
    # Same gray on both devices: same patterns, so only the order of float additions differs.
    gray = rgb_to_gray(images)[:, 0]
    on_gpu = lbp_uniform(gray.cuda(), cell_size=8)
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), lbp_uniform(gray, cell_size=8), atol=1e-5, rtol=0)
    # Through the module, on gray photos: colour ones could order a few near-equal lumas differently per device.
    grays = rgb_to_gray(images).expand(-1, 3, -1, -1).contiguous()
    lbp = LBP(cell_size=8)
    features = lbp.to("cuda")(grays.cuda())
    assert features.device.type == "cuda" and features.shape == (11, 58, 5, 4)
    torch.testing.assert_close(features.cpu(), LBP(cell_size=8)(grays), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------- registration


@pytest.fixture
def registered() -> Iterator[object]:
    """The ``lbp`` family, from the installed entry point or registered by hand for the test."""
    yield from registered_family(repinv_lbp, "lbp")


def test_create_representation(registered: object) -> None:
    from repinv.registry.factories import create_representation, list_representations

    assert "lbp" in list_representations("lbp")
    lbp = create_representation("lbp", cell_size=8)
    assert isinstance(lbp, LBP) and lbp.cell_size == 8 and not lbp.training and not lbp.differentiable
    assert lbp(torch.rand(1, 3, 32, 32)).shape == (1, 58, 4, 4)
    assert create_representation("lbp").spec((64, 64)) == FeatureSpec((58, 4, 4))
    rebuilt = create_representation("lbp", **lbp.config())
    assert rebuilt.config() == lbp.config()
    with pytest.raises(UnknownVariant, match="lbp"):
        create_representation("lbp:big")
    with pytest.raises(InvalidOption):
        create_representation("lbp", cell_size="banana")
    with pytest.raises(InvalidOption, match="unknown lbp option"):
        create_representation("lbp", orientations=9)


def test_entry_point_declared() -> None:
    assert declared_entry_point("lbp") is repinv_lbp
