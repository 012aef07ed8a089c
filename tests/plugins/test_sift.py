"""The built-in sparse SIFT plugin: cell vectors vs OpenCV, conventions, determinism, shapes, options, registration."""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import declared_entry_point, registered_family

import repinv_sift
from repinv.errors import InvalidOption, ShapeError, UnknownVariant
from repinv.representations.base import FeatureSpec
from repinv_sift import sift as sift_module
from repinv_sift.sift import SIFT, Keypoints, create_sift, gray_uint8, sift_grid_size, sparse_sift

CHANNELS = 133


def rgb(gray: np.ndarray) -> torch.Tensor:
    """A ``(1, 3, H, W)`` RGB image whose BT.601 luma, as ``uint8``, is exactly ``gray``."""
    channel = torch.from_numpy(gray.astype(np.float32) / 255)
    return channel.expand(1, 3, *gray.shape).contiguous()


def blob(size: tuple[int, int] = (64, 64), centre: tuple[float, float] = (30.3, 25.7),
         ramp: tuple[float, float] = (0, 0), sigma: float = 3.0) -> np.ndarray:
    """A Gaussian blob on a flat (or linearly ramped) background, ``uint8``: OpenCV finds a keypoint at its centre."""
    y, x = np.mgrid[:size[0], :size[1]].astype(np.float64)
    image = 60 + ramp[0] * (x - x.mean()) + ramp[1] * (y - y.mean())
    image += 120 * np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Eight 64x64 views of scikit-image's photos (real images: many keypoints, many shared cells)."""
    from skimage import data as skdata

    sources = [torch.from_numpy(f()).permute(2, 0, 1).float() / 255
               for f in (skdata.astronaut, skdata.coffee, skdata.chelsea)]
    views = []
    for i in range(8):
        source = sources[i % 3]
        top, left = 30 * i, 40 * i
        crop = source[:, top:top + 128, left:left + 128]
        views.append(F.interpolate(crop[None], size=(64, 64), mode="bilinear", antialias=True)[0])
    return torch.stack(views).clamp(0, 1)


def expected_vectors(gray: np.ndarray, cell_size: int) -> dict[tuple[int, int], list[np.ndarray]]:
    """OpenCV's ``detectAndCompute`` run directly, turned into cell vectors by the documented conventions."""
    keypoints, descriptors = cv2.SIFT_create().detectAndCompute(gray, None)
    cells: dict[tuple[int, int], list[np.ndarray]] = {}
    for kp, descriptor in zip(keypoints, descriptors if descriptors is not None else [], strict=True):
        x, y = float(kp.pt[0]), float(kp.pt[1])
        alpha = math.radians(kp.angle)
        vector = np.concatenate([descriptor / 512, [x % cell_size, y % cell_size, math.sin(alpha), math.cos(alpha),
                                                    math.log(kp.size / 2)]]).astype(np.float32)
        cells.setdefault((math.floor(y / cell_size), math.floor(x / cell_size)), []).append(vector)
    return cells


def assert_matches_opencv(features: np.ndarray, gray: np.ndarray, cell_size: int) -> dict[tuple[int, int], int]:
    """Every cell holds zeros or one of its keypoints' vectors; returns the number of keypoints per filled cell."""
    cells = expected_vectors(gray, cell_size)
    assert features.shape == (CHANNELS, *sift_grid_size(gray.shape, cell_size))
    for row in range(features.shape[1]):
        for column in range(features.shape[2]):
            vector = features[:, row, column]
            candidates = cells.get((row, column), [])
            if not candidates:
                assert not vector.any(), (row, column)
            else:
                assert any(np.allclose(vector, c, rtol=0, atol=1e-6) for c in candidates), (row, column)
    return {cell: len(vectors) for cell, vectors in cells.items()}


# --------------------------------------------------------------------------------------------- agreement with OpenCV


def test_blob_keypoint_read_back() -> None:
    gray = blob()
    image = rgb(gray)
    assert np.array_equal(gray_uint8(image)[0], gray)
    features = SIFT()(image)[0].numpy()
    counts = assert_matches_opencv(features, gray, 4)
    # OpenCV reports the blob at about (30.55, 25.95): column floor(30.55 / 4) = 7, row floor(25.95 / 4) = 6.
    assert list(counts) == [(6, 7)] and counts[(6, 7)] >= 2  # one point, several orientations
    vector = features[:, 6, 7]
    assert vector[128] == pytest.approx(30.55 - 28, abs=0.05) and vector[129] == pytest.approx(25.95 - 24, abs=0.05)
    assert vector[130] ** 2 + vector[131] ** 2 == pytest.approx(1, abs=1e-5)
    assert vector[132] == pytest.approx(math.log(3.0), abs=0.15)  # sigma = kp.size / 2 is the blob's scale
    assert np.linalg.norm(vector[:128]) == pytest.approx(1, abs=0.01)  # Lowe's unit-norm descriptor
    assert np.count_nonzero(features.any(axis=0)) == 1


@pytest.mark.parametrize("cell_size", [4, 3, 8])
def test_photos_match_opencv(photos: torch.Tensor, cell_size: int) -> None:
    features = SIFT(cell_size=cell_size)(photos).numpy()
    shared = 0
    for i, gray in enumerate(gray_uint8(photos)):
        counts = assert_matches_opencv(features[i], gray, cell_size)
        shared += sum(n > 1 for n in counts.values())
        assert counts, "a photo without keypoints"
    assert shared > 0  # the random choice was exercised


@pytest.mark.parametrize("direction, ramp", [((0, 1), (0, 2.0)), ((1, 0), (2.0, 0)), ((0, -1), (0, -2.0)),
                                             ((-1, 0), (-2.0, 0))], ids=["down", "right", "up", "left"])
def test_orientation_convention(direction: tuple[int, int], ramp: tuple[float, float]) -> None:
    """``(cos alpha, sin alpha)`` is the dark-to-bright direction as ``(dx, dy)`` with ``y`` down (clockwise)."""
    features = SIFT()(rgb(blob(ramp=ramp)))[0]
    vector = features[:, 6, 7]
    assert vector.any()
    cosine, sine = float(vector[131]), float(vector[130])
    assert cosine * direction[0] + sine * direction[1] > 0.8


# --------------------------------------------------------------------------------------------- known keypoints


def keypoints(points: list[tuple[float, float, float, float]]) -> Keypoints:
    """Keypoints from ``(x, y, size, angle in degrees)``, each with a distinct descriptor."""
    count = len(points)
    descriptors = np.zeros((count, 128), dtype=np.float32)
    descriptors[np.arange(count), np.arange(count)] = 256  # one-hot, so every keypoint is recognisable
    array = np.array(points, dtype=np.float64).reshape(count, 4)
    return Keypoints(xy=array[:, :2], size=array[:, 2], angle=array[:, 3], descriptors=descriptors)


def test_injected_keypoints_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    known = keypoints([(9.5, 14.25, 3.0, 90.0), (8.0, 0.0, 2.0, 0.0), (63.9, 63.9, 20.0, 225.0)])
    monkeypatch.setattr(sift_module, "detect", lambda gray: known)
    features = SIFT()(torch.rand(1, 3, 64, 64))[0]
    assert features.shape == (CHANNELS, 16, 16)
    first = features[:, 3, 2]  # row floor(14.25 / 4), column floor(9.5 / 4)
    assert first[0] == 0.5 and first[1:128].abs().sum() == 0
    torch.testing.assert_close(first[128:], torch.tensor([1.5, 2.25, 1.0, 0.0, math.log(1.5)]), atol=1e-6, rtol=0)
    second = features[:, 0, 2]  # x = 8 exactly: first pixel column of cell 2, x mod d = 0
    assert second[1] == 0.5
    torch.testing.assert_close(second[128:], torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0]), atol=1e-6, rtol=0)
    third = features[:, 15, 15]
    s = math.sqrt(0.5)
    torch.testing.assert_close(third[128:], torch.tensor([3.9, 3.9, -s, -s, math.log(10.0)]), atol=1e-5, rtol=0)
    assert torch.count_nonzero(features.abs().sum(0)) == 3
    features = SIFT(cell_size=5)(torch.rand(1, 3, 64, 64))[0]  # 13x13 cells, the last one partial
    assert features.shape == (CHANNELS, 13, 13)
    torch.testing.assert_close(features[128:130, 2, 1], torch.tensor([4.5, 4.25]), atol=1e-6, rtol=0)
    torch.testing.assert_close(features[128:130, 12, 12], torch.tensor([3.9, 3.9]), atol=1e-5, rtol=0)


def test_random_choice_among_keypoints_in_a_cell() -> None:
    points = [(5.2, 6.1, 3.0, 10.0), (5.2, 6.1, 3.0, 200.0), (6.9, 4.3, 4.0, 300.0), (21.0, 21.0, 3.0, 45.0)]
    known = keypoints(points)
    gray = np.random.default_rng(0).integers(0, 256, (24, 24), dtype=np.uint8)
    chosen = []
    for seed in range(40):
        features = sparse_sift(gray, 4, seed, keypoints=known)
        assert np.array_equal(features, sparse_sift(gray, 4, seed, keypoints=known))  # reproducible
        winner = int(np.argmax(features[:3, 1, 1]))  # the one-hot descriptor names the keypoint
        assert features[winner, 1, 1] == 0.5
        chosen.append(winner)
        # the listing order does not matter
        permuted = Keypoints(*(array[[3, 2, 0, 1]] for array in known))
        assert np.array_equal(features, sparse_sift(gray, 4, seed, keypoints=permuted))
        assert features[3, 5, 5] == 0.5  # the lone keypoint is always there
    assert set(chosen) == {0, 1, 2}
    other = np.array(gray)
    other[0, 0] ^= 1  # another image content seeds another choice
    assert any(int(np.argmax(sparse_sift(other, 4, seed, keypoints=known)[:3, 1, 1])) != chosen[seed]
               for seed in range(40))


# --------------------------------------------------------------------------------------------- determinism


def test_deterministic(photos: torch.Tensor) -> None:
    first = SIFT()(photos)
    assert torch.equal(first, SIFT()(photos))
    assert torch.equal(first, SIFT()(photos.clone()))


def test_seed_changes_only_shared_cells(photos: torch.Tensor) -> None:
    grays = gray_uint8(photos)
    shared = np.zeros((len(photos), 16, 16), dtype=bool)
    for i, gray in enumerate(grays):
        for (row, column), vectors in expected_vectors(gray, 4).items():
            shared[i, row, column] = len(vectors) > 1
    base = SIFT(seed=0)(photos)
    differs = False
    for seed in (1, 2, 3):
        other = SIFT(seed=seed)(photos)
        changed = (other != base).any(dim=1).numpy()
        assert not (changed & ~shared).any()  # cells with one keypoint (or none) never change
        differs |= bool(changed.any())
    assert differs


# --------------------------------------------------------------------------------------------- empty, shapes, batches


def test_no_keypoints_gives_zeros() -> None:
    for size in [(64, 64), (30, 45), (3, 5)]:
        features = SIFT()(torch.full((2, 3, *size), 0.4))
        assert features.shape == (2, CHANNELS, *sift_grid_size(size, 4))
        assert features.dtype == torch.float32
        assert torch.count_nonzero(features) == 0
    assert SIFT()(torch.rand(1, 3, 3, 5)).shape == (1, CHANNELS, 1, 2)


@pytest.mark.parametrize("cell_size", [1, 3, 4, 5, 8])
def test_spec_matches_output(monkeypatch: pytest.MonkeyPatch, cell_size: int) -> None:
    sift = SIFT(cell_size=cell_size)
    sizes = [(64, 64), (61, 61), (37, 53), (17, 30), (5, 3), (100, 77)]
    outputs = {size: sift(torch.rand(1, 3, *size)).shape[1:] for size in sizes}

    def refuse(gray: np.ndarray) -> Keypoints:
        raise AssertionError("spec ran SIFT")

    monkeypatch.setattr(sift_module, "detect", refuse)
    for size in sizes:
        rows, columns = math.ceil(size[0] / cell_size), math.ceil(size[1] / cell_size)
        assert sift.spec(size) == FeatureSpec((CHANNELS, rows, columns))
        assert outputs[size] == (CHANNELS, rows, columns)
    assert SIFT().spec((64, 64)).shape == (133, 16, 16)


def test_batch_equals_single_images(photos: torch.Tensor) -> None:
    images = torch.cat([photos, torch.full((1, 3, 64, 64), 0.5)])
    sift = SIFT()
    singles = torch.cat([sift(image[None]) for image in images])
    assert torch.equal(sift(images), singles)
    assert sift(images[:0]).shape == (0, CHANNELS, 16, 16)


def test_data_loader_workers(photos: torch.Tensor) -> None:
    """As the training loop calls it: one image at a time in worker processes, the same as in the main process."""
    from torch.utils.data import DataLoader, Dataset

    sift = SIFT()
    expected = sift(photos)

    class Samples(Dataset):
        def __len__(self) -> int:
            return len(photos)

        def __getitem__(self, index: int) -> torch.Tensor:
            with torch.no_grad():
                return sift(photos[index].unsqueeze(0))[0]

    threads = cv2.getNumThreads()
    loaded = torch.cat(list(DataLoader(Samples(), batch_size=4, num_workers=2, timeout=120)))
    assert torch.equal(loaded, expected)
    assert cv2.getNumThreads() == threads  # restored after every call


def test_dtypes_and_layouts(photos: torch.Tensor) -> None:
    sift = SIFT()
    reference = sift(photos[:2])
    double = sift(photos[:2].double())
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), reference, atol=0, rtol=0)
    channels_last = photos[:2].contiguous(memory_format=torch.channels_last)
    assert torch.equal(sift(channels_last), reference)
    with pytest.raises(ShapeError):
        sift(torch.rand(1, 64, 64))
    with pytest.raises(ShapeError):
        sift(torch.rand(1, 1, 64, 64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_input(photos: torch.Tensor) -> None:
    sift = SIFT().to("cuda")
    features = sift(photos.cuda())
    assert features.device.type == "cuda"
    assert torch.equal(features.cpu(), SIFT()(photos))


# --------------------------------------------------------------------------------------------- options, registration


def test_attributes_and_config() -> None:
    sift = create_sift(None, cell_size=8, seed=3)
    assert (sift.name, sift.differentiable, sift.per_image) == ("sift", False, True)
    assert sift.config() == {"cell_size": 8, "seed": 3}
    assert create_sift().config() == {"cell_size": 4, "seed": 0}
    assert create_sift(None, **sift.config()).config() == sift.config()
    assert "cell_size=8" in repr(sift)
    assert list(sift.parameters()) == [] and sift.state_dict() == {}


@pytest.mark.parametrize("options, message", [
    ({"cell_size": "banana"}, "sift option cell_size must be a positive integer, got 'banana'"),
    ({"cell_size": 0}, "cell_size must be a positive integer, got 0"),
    ({"cell_size": 2.5}, "got 2.5"),
    ({"cell_size": True}, "got True"),
    ({"seed": -1}, "seed must be a non-negative integer, got -1"),
    ({"seed": "x"}, "seed must be a non-negative integer"),
    ({"cellsize": 4}, "unknown sift option cellsize; valid options: cell_size, seed"),
    ({"a": 1, "b": 2}, "unknown sift options a, b"),
])
def test_invalid_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidOption) as error:
        create_sift(None, **options)
    assert message in str(error.value)


def test_no_variants() -> None:
    with pytest.raises(UnknownVariant):
        create_sift("dense")


@pytest.fixture
def registered() -> Iterator[object]:
    """The ``sift`` family, from the installed entry point or registered by hand for the test."""
    yield from registered_family(repinv_sift, "sift")


def test_registered(registered: object) -> None:
    from repinv.registry.factories import create_representation, list_representations

    assert list_representations("sift") == ["sift"]
    sift = create_representation("sift", cell_size=8)
    assert isinstance(sift, SIFT) and sift.cell_size == 8 and not sift.training
    assert sift(torch.rand(1, 3, 32, 32)).shape == (1, CHANNELS, 4, 4)
    assert "cell_size" in registered.description and "seed" in registered.description  # type: ignore[attr-defined]
    with pytest.raises(UnknownVariant, match="sift"):
        create_representation("sift:dense")
    with pytest.raises(InvalidOption):
        create_representation("sift", cellsize=4)


def test_entry_point_declared() -> None:
    assert declared_entry_point("sift") is repinv_sift
