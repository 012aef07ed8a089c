"""The built-in HOG plugin: agreement with VLFeat, shapes, batching, gradients, options, devices, registration."""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest
import torch
from conftest import Photos, declared_entry_point, registered_family

import repinv_hog
from repinv.errors import InvalidOption, ShapeError, UnknownVariant
from repinv.representations.base import FeatureSpec, rgb_to_gray
from repinv_hog import hog as hog_module
from repinv_hog.hog import HOG, create_hog, direction_table, hog_grid_size

TOLERANCE = 1e-4  # max abs difference to VLFeat; float rounding alone gives ~3e-7
SIZES = [(64, 64), (61, 61), (100, 77), (128, 96), (37, 53)]


def max_difference_to_vlfeat(vl: ModuleType, images: torch.Tensor, **options: object) -> float:
    """Ours on the batch vs VLFeat on each image, both fed the same float32 gray image."""
    ours = create_hog(**options)(images)
    gray = rgb_to_gray(images)[:, 0].numpy()
    worst = 0.0
    for i in range(len(images)):
        reference = vl.hog(gray[i], cell_size=options.get("cell_size", 8), orientations=options.get("orientations", 9),
                           bilinear_orientations=options.get("bilinear_orientations", False))
        assert ours[i].shape == reference.shape
        worst = max(worst, float(np.abs(ours[i].numpy() - reference).max()))
    return worst


# --------------------------------------------------------------------------------------------- VLFeat agreement


@pytest.mark.parametrize("cell_size", [8, 4, 6])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_matches_vlfeat_on_photos(vl: ModuleType, photos: Photos, size: tuple[int, int],
                                  cell_size: int) -> None:
    difference = max_difference_to_vlfeat(vl, photos(size), cell_size=cell_size)
    print(f"max |ours - VLFeat| at {size[0]}x{size[1]}, cell {cell_size}: {difference:.2e}")
    assert difference < TOLERANCE


@pytest.mark.parametrize("orientations", [1, 2, 4, 5, 18])
@pytest.mark.parametrize("bilinear", [False, True], ids=["hard", "bilinear"])
def test_matches_vlfeat_options(vl: ModuleType, photos: Photos, orientations: int,
                                bilinear: bool) -> None:
    images = photos((61, 53))
    difference = max_difference_to_vlfeat(vl, images, cell_size=5, orientations=orientations,
                                          bilinear_orientations=bilinear)
    assert difference < TOLERANCE


def _synthetic() -> torch.Tensor:
    """Images full of exact ties: vertical, horizontal and diagonal gradients, flat areas, quantized noise."""
    y, x = torch.meshgrid(torch.arange(40.0), torch.arange(36.0), indexing="ij")
    noise = torch.from_numpy(np.random.default_rng(0).integers(0, 4, (40, 36))).float() / 4
    gray = torch.stack([(y % 4 < 2).float(), (x % 3 < 1).float(), ((x + y) % 5) / 5, ((x - y) % 7) / 7,
                        (x + y) / 80, noise, torch.full_like(x, 0.5)])
    return gray[:, None].expand(-1, 3, -1, -1).contiguous()


@pytest.mark.parametrize("orientations", [1, 4, 6, 9])
@pytest.mark.parametrize("bilinear", [False, True], ids=["hard", "bilinear"])
def test_matches_vlfeat_on_ties(vl: ModuleType, orientations: int, bilinear: bool) -> None:
    difference = max_difference_to_vlfeat(vl, _synthetic(), cell_size=8, orientations=orientations,
                                          bilinear_orientations=bilinear)
    assert difference < TOLERANCE


def test_matches_vlfeat_on_tiny_imagenet(vl: ModuleType, tiny_imagenet_batch: torch.Tensor) -> None:
    batch = tiny_imagenet_batch
    assert max_difference_to_vlfeat(vl, batch, cell_size=8) < TOLERANCE
    assert max_difference_to_vlfeat(vl, batch[:, :, 2:, 5:], cell_size=8) < TOLERANCE  # 62x59


def test_fast_bins_agree_with_vlfeat_loop() -> None:
    """The atan2 shortcut plus replay near boundaries picks VLFeat's bins, ties included (no library needed)."""
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(2, 5000, generator=generator)
    # Quantized components put many gradients exactly on bin boundaries and centres.
    grid = torch.randint(-3, 4, (2, 5000), generator=generator).float() / 8
    special = torch.tensor([[0.0, 1, -1, 1, -1, 0, 0, 1, 1e-30], [1.0, 0, 0, 1, -1, -1, 0, -1, 1]])
    gx, gy = torch.cat([values, grid, special], dim=1)
    for n in (1, 2, 3, 4, 9, 18):
        table = direction_table(n)
        expected, runner_up = hog_module._vlfeat_bins(gx, gy, table)
        unwrapped, _ = hog_module._orientation_bins(torch.atan2(gy, gx), gx, gy, table, bilinear=False)
        assert torch.equal(unwrapped, unwrapped.round()) and bool((unwrapped.abs() <= n + 1).all())
        assert torch.equal(unwrapped.long().remainder(2 * n), expected), n
        nearest, second = hog_module._orientation_bins(torch.atan2(gy, gx), gx, gy, table, bilinear=True)
        live = gx.abs() + gy.abs() > 0
        if n > 1:  # the second bin is always a neighbour of the first
            assert second is not None
            assert bool((second.abs() <= n + 1).all())
            step = (second - nearest).long().remainder(2 * n)
            assert bool(((step == 1) | (step == 2 * n - 1) | (step == 0))[live].all())


# --------------------------------------------------------------------------------------------- shapes and batches


@pytest.mark.parametrize("cell_size", [1, 3, 4, 6, 8, 16])
def test_shape_and_spec(cell_size: int) -> None:
    hog = HOG(cell_size=cell_size)
    for height, width in [(64, 64), (61, 61), (37, 53), (8, 9), (100, 77)]:
        least = max(4, cell_size - cell_size // 2)
        if min(height, width) < least:
            continue
        rows, columns = (height + cell_size // 2) // cell_size, (width + cell_size // 2) // cell_size
        features = hog(torch.rand(2, 3, height, width))
        assert features.shape == (2, 31, rows, columns)
        assert features.dtype == torch.float32
        assert hog.spec((height, width)) == FeatureSpec((31, rows, columns))
        assert hog_grid_size((height, width), cell_size) == (rows, columns)
    assert HOG(orientations=4).spec((64, 64)).shape == (16, 8, 8)


def test_too_small_images_raise() -> None:
    with pytest.raises(ShapeError, match="at least 8x8"):
        HOG(cell_size=16)(torch.rand(1, 3, 7, 40))
    with pytest.raises(ShapeError, match="at least 4x4"):
        HOG()(torch.rand(1, 3, 3, 3))
    with pytest.raises(ShapeError):
        HOG().spec((2, 64))
    with pytest.raises(ShapeError):
        HOG()(torch.rand(1, 64, 64))
    with pytest.raises(ShapeError):
        HOG()(torch.rand(1, 1, 64, 64))


def test_batch_equals_single_images(monkeypatch: pytest.MonkeyPatch, photos: Photos) -> None:
    images = torch.cat([photos((61, 53)), torch.rand(2, 3, 61, 53)])
    hog = HOG()
    singles = torch.cat([hog(image[None]) for image in images])
    torch.testing.assert_close(hog(images), singles, atol=1e-6, rtol=0)
    monkeypatch.setattr(hog_module, "_CHUNK_PIXELS", 61 * 53 * 2)  # force several chunks
    torch.testing.assert_close(hog(images), singles, atol=1e-6, rtol=0)


def test_flat_image() -> None:
    features = HOG()(torch.full((1, 3, 32, 32), 0.3))
    assert torch.count_nonzero(features) == 0


# --------------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("bilinear", [False, True], ids=["hard", "bilinear"])
def test_gradcheck(bilinear: bool) -> None:
    # Random images: no gradient vanishes, none sits on an orientation boundary or a 0.2 clamp within eps.
    generator = torch.Generator().manual_seed(1)
    hog = HOG(cell_size=4, bilinear_orientations=bilinear)
    small = torch.rand(1, 3, 9, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(hog, (small,), eps=1e-6, atol=1e-5, rtol=1e-3)
    larger = torch.rand(2, 3, 21, 18, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(hog, (larger,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


@pytest.mark.parametrize("bilinear", [False, True], ids=["hard", "bilinear"])
def test_gradients_finite_on_flat_regions(bilinear: bool) -> None:
    images = torch.full((1, 3, 24, 24), 0.5)
    images[:, :, 8:16, 8:16] = 0.8  # flat areas (zero gradient) around a square
    images.requires_grad_(True)
    HOG(bilinear_orientations=bilinear)(images).square().sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0


def test_gradients_after_inference_mode() -> None:
    # Cached per-size tensors created under inference mode must not poison later autograd use.
    hog = HOG(cell_size=4)
    with torch.inference_mode():
        hog(torch.rand(2, 3, 24, 20))
    images = torch.rand(2, 3, 24, 20, requires_grad=True)
    hog(images).sum().backward()
    assert images.grad is not None


def test_bilinear_gradients_see_orientation() -> None:
    # Hard assignment is piecewise constant in the angle; bilinear assignment is not.
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(1, 3, 16, 16, generator=generator, dtype=torch.float64)
    direction = torch.randn(images.shape, generator=generator, dtype=torch.float64)
    hard, soft = HOG(bilinear_orientations=False), HOG(bilinear_orientations=True)
    for hog in (hard, soft):
        x = images.clone().requires_grad_(True)
        hog(x).sum().backward()
        assert x.grad is not None
        numeric = (hog(images + 1e-6 * direction) - hog(images - 1e-6 * direction)).sum() / 2e-6
        assert math.isclose(float((x.grad * direction).sum()), float(numeric), rel_tol=1e-3, abs_tol=1e-6)


# --------------------------------------------------------------------------------------------- options, devices


@pytest.mark.parametrize("options, message", [
    ({"cell_size": "banana"}, "hog option cell_size must be a positive integer, got 'banana'"),
    ({"cell_size": 0}, "cell_size must be a positive integer, got 0"),
    ({"cell_size": -3}, "got -3"),
    ({"cell_size": 2.5}, "got 2.5"),
    ({"cell_size": True}, "got True"),
    ({"orientations": 0}, "orientations must be a positive integer"),
    ({"bilinear_orientations": "yes"}, "bilinear_orientations must be true or false"),
    ({"cellsize": 8}, "unknown hog option cellsize; valid options: cell_size, orientations, bilinear_orientations"),
])
def test_invalid_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidOption) as error:
        create_hog(None, **options)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_no_variants() -> None:
    with pytest.raises(UnknownVariant):
        create_hog("big")


def test_attributes_and_config() -> None:
    hog = create_hog(None, cell_size=4, bilinear_orientations=True)
    assert (hog.name, hog.differentiable, hog.per_image) == ("hog", True, False)
    assert hog.config() == {"cell_size": 4, "orientations": 9, "bilinear_orientations": True}
    rebuilt = create_hog(None, **hog.config())
    images = torch.rand(2, 3, 33, 30)
    torch.testing.assert_close(rebuilt(images), hog(images), atol=0, rtol=0)
    assert "cell_size=4" in repr(hog)


def test_dtypes_and_layouts() -> None:
    images = torch.rand(2, 3, 40, 36)
    reference = HOG()(images)
    hog = HOG().to(torch.float64)
    features = hog(images.double())
    assert features.dtype == torch.float64
    torch.testing.assert_close(features.float(), reference, atol=1e-4, rtol=0)
    half = hog(images.half())  # computed in float32, returned in the input's dtype
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    channels_last = images.to(memory_format=torch.channels_last)
    torch.testing.assert_close(hog(channels_last), reference, atol=0, rtol=0)
    strided = torch.rand(2, 3, 40, 72)[..., ::2]
    torch.testing.assert_close(hog(strided), hog(strided.contiguous()), atol=0, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("bilinear", [False, True], ids=["hard", "bilinear"])
def test_cuda_matches_cpu(photos: Photos, bilinear: bool) -> None:
    images = torch.cat([photos((40, 36)), _synthetic()])
    hog = HOG(bilinear_orientations=bilinear)
    on_gpu = hog.to("cuda")(images.cuda())
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), HOG(bilinear_orientations=bilinear)(images), atol=1e-4, rtol=0)
    x = images.cuda().requires_grad_(True)
    hog(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# --------------------------------------------------------------------------------------------- registration


@pytest.fixture
def registered() -> Iterator[object]:
    """The ``hog`` family, from the installed entry point or registered by hand for the test."""
    yield from registered_family(repinv_hog, "hog")


def test_create_representation(registered: object) -> None:
    from repinv.registry.factories import create_representation

    hog = create_representation("hog", cell_size=4)
    assert isinstance(hog, HOG) and hog.cell_size == 4 and not hog.training
    assert hog(torch.rand(1, 3, 32, 32)).shape == (1, 31, 8, 8)
    rebuilt = create_representation("hog", **hog.config())
    assert rebuilt.config() == hog.config()
    with pytest.raises(UnknownVariant, match="hog"):
        create_representation("hog:big")
    with pytest.raises(InvalidOption):
        create_representation("hog", cell_size="banana")


def test_entry_point_declared() -> None:
    assert declared_entry_point("hog") is repinv_hog
