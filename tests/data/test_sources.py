"""Tests of repinv.data: sources, conversions to RGB, bad files, transforms, determinism, tar shards."""

from __future__ import annotations

import io
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_tar
from PIL import Image
from torch.utils.data import DataLoader

from repinv.data.sources import (
    BUILTIN_TEST,
    BUILTIN_TRAIN,
    DataWarning,
    ImageDataset,
    default_data_root,
    load_image,
    load_images,
)
from repinv.errors import DataError, InvalidOption

RGB = (200, 100, 50)


def _save(path: Path, image: Image.Image, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random RGB noise: every crop and flip of it is distinguishable."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _thirds(width: int, height: int) -> Image.Image:
    """Red, green and blue thirds along the longer side: a centred square crop of a 3:1 image is all green."""
    pixels = np.zeros((max(width, height), min(width, height), 3), np.uint8)
    third = len(pixels) // 3
    for channel in range(3):
        pixels[channel * third:(channel + 1) * third, :, channel] = 255
    return Image.fromarray(pixels if height > width else pixels.transpose(1, 0, 2).copy())


def _as_tensor(image: Image.Image) -> torch.Tensor:
    """An 8-bit RGB Pillow image as (3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)





def _encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _colour(tensor: torch.Tensor) -> list[float]:
    """The colour of the top-left pixel, in 0..255."""
    return [round(float(v) * 255, 1) for v in tensor[:, 0, 0]]


def _data_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


# --- conversions ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, options", [("a.png", {}), ("a.bmp", {}), ("a.tif", {}), ("a.webp", {"lossless": True})])
def test_lossless_formats_are_exact(tmp_path, name, options):
    image = load_image(_save(tmp_path / name, Image.new("RGB", (5, 4), RGB), **options))
    assert image.shape == (3, 4, 5) and image.dtype == torch.float32
    assert _colour(image) == list(RGB)


def test_jpeg_is_close(tmp_path):
    image = load_image(_save(tmp_path / "a.JPG", Image.new("RGB", (16, 16), RGB), quality=95))
    assert np.allclose(_colour(image), RGB, atol=3)


def test_grayscale_and_bilevel(tmp_path):
    assert _colour(load_image(_save(tmp_path / "g.png", Image.new("L", (3, 3), 128)))) == [128.0] * 3
    assert _colour(load_image(_save(tmp_path / "b.png", Image.new("1", (3, 3), 1)))) == [255.0] * 3


def test_palette_with_and_without_transparency(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    palette.putpixel((1, 0), 1)
    plain = load_image(_save(tmp_path / "p.png", palette))
    assert _colour(plain) == [10.0, 20.0, 30.0] and _colour(plain[:, :, 1:]) == [40.0, 50.0, 60.0]
    transparent = load_image(_save(tmp_path / "pt.png", palette, transparency=0))
    assert _colour(transparent) == [255.0] * 3  # composited over white
    assert _colour(transparent[:, :, 1:]) == [40.0, 50.0, 60.0]


def test_alpha_is_composited_over_white(tmp_path):
    rgba = Image.new("RGBA", (3, 1), (200, 0, 0, 255))
    rgba.putpixel((1, 0), (200, 0, 0, 0))
    rgba.putpixel((2, 0), (200, 0, 0, 128))
    image = load_image(_save(tmp_path / "rgba.png", rgba))
    assert _colour(image) == [200.0, 0.0, 0.0]
    assert _colour(image[:, :, 1:]) == [255.0] * 3
    alpha = 128 / 255
    assert np.allclose(_colour(image[:, :, 2:]), [200 * alpha + 255 * (1 - alpha)] + [255 * (1 - alpha)] * 2, atol=0.6)
    la = load_image(_save(tmp_path / "la.png", Image.new("LA", (2, 2), (0, 0))))
    assert _colour(la) == [255.0] * 3


def test_cmyk(tmp_path):
    image = load_image(_save(tmp_path / "c.tif", Image.new("CMYK", (2, 2), (0, 255, 0, 0))))
    assert _colour(image) == [255.0, 0.0, 255.0]


def test_sixteen_bit_grayscale_png(tmp_path):
    values = np.array([[0, 32768, 65535]], np.uint16)
    image = load_image(_save(tmp_path / "g16.png", Image.fromarray(values)))
    assert torch.allclose(image[0, 0], torch.tensor([0.0, 32768 / 65535, 1.0]))
    assert torch.equal(image[0], image[2])


def test_sixteen_bit_rgb_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    values = np.zeros((2, 2, 3), np.uint16)
    values[0, 0] = (65535, 32768, 0)
    tifffile.imwrite(tmp_path / "rgb16.tif", values)
    image = load_image(tmp_path / "rgb16.tif")
    assert np.allclose(image[:, 0, 0].numpy(), [1.0, 0.5, 0.0], atol=1 / 255)


def test_integer_and_float_modes(tmp_path):
    assert load_image(_save(tmp_path / "i.tif", Image.new("I", (2, 2), 65535)))[0, 0, 0] == 1.0
    floats = load_image(_save(tmp_path / "f.tif", Image.fromarray(np.array([[0.25, 2.0]], np.float32))))
    assert torch.allclose(floats[0, 0], torch.tensor([0.25, 1.0]))


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: stored 20 wide, shown 10 wide
    path = _save(tmp_path / "rot.jpg", Image.new("RGB", (20, 10)), exif=exif)
    assert load_image(path).shape == (3, 20, 10)
    assert load_images([path], (8, 4)).shape == (1, 3, 8, 4)


# --- sources and bad files -----------------------------------------------------------------------------------------

@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """Nested folders with 4 good images (upper-case extensions too), 3 bad ones and files that are ignored."""
    root = tmp_path / "photos"
    _save(root / "a.jpg", _photo(20, 12, 1))
    _save(root / "sub" / "B.PNG", _photo(12, 20, 2))
    _save(root / "sub" / "deeper" / "c.Tiff", _photo(16, 16, 3))
    _save(root / "d.WEBP", _photo(17, 13, 4))
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)
    (root / "sub" / "text.png").write_text("not an image")
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("ignored: not an image extension")
    (root / "._a.jpg").write_bytes(b"macOS resource fork, ignored")
    _save(root / ".hidden" / "e.png", _photo(8, 8))
    return root


def test_folder_is_recursive_and_skips_bad_files_in_one_warning(photo_folder):
    with pytest.warns(DataWarning) as record:
        dataset = ImageDataset(str(photo_folder), 8, train=False)
    messages = _data_warnings(record)
    assert len(messages) == 1
    assert "skipped 3 unreadable images of 7" in messages[0] and "cannot identify image file" in messages[0]
    assert len(dataset) == 4 and dataset.skipped == 3
    assert sorted(Path(dataset.name(i)).name for i in range(4)) == ["B.PNG", "a.jpg", "c.Tiff", "d.WEBP"]
    assert dataset.describe() == "4 images from 1 source (3 unreadable skipped)"
    assert all(dataset[i].shape == (3, 8, 8) for i in range(4))


def test_image_failing_at_decode_is_replaced_by_the_next_one(tmp_path):
    data = _encoded(_photo(64, 64), "JPEG")
    _save(tmp_path / "f" / "0.png", _photo(8, 8, 0))
    (tmp_path / "f" / "1.jpg").write_bytes(data[: len(data) // 3])  # header fine, scan data cut off
    _save(tmp_path / "f" / "2.png", _photo(8, 8, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the header check passes: no warning while indexing
        dataset = ImageDataset(str(tmp_path / "f"), 8, train=False)
    assert len(dataset) == 3
    with pytest.warns(DataWarning, match="1.jpg"):
        replaced = dataset[1]
    assert torch.equal(replaced, dataset[2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once
        assert torch.equal(dataset[1], replaced)


@pytest.fixture
def mixed_jpegs(tmp_path):
    """40 images (more than the decoded cache holds): small JPEGs needing no resize for 32x32 crops (32x32, 40x32),
    ones needing a resize (24x24, 64x64), a PNG and a JPEG cut short."""
    folder = tmp_path / "mixed"
    sizes = [(32, 32), (40, 32), (24, 24), (64, 64)]
    for i in range(38):
        _save(folder / f"{i:02d}.jpg", _photo(*sizes[i % 4], seed=i), quality=90)
    _save(folder / "38.png", _photo(32, 32, seed=38))
    data = _encoded(_photo(32, 32, seed=39), "JPEG")
    (folder / "39.jpg").write_bytes(data[:len(data) * 2 // 3])  # the header survives: indexed, fails later
    return folder


@pytest.mark.parametrize("train, scale", [(True, (1.0, 1.0)), (True, (1.0, 1.5)), (False, (1.0, 1.0))])
def test_a_batch_decoded_together_equals_its_items(mixed_jpegs, train, scale):
    dataset = ImageDataset(str(mixed_jpegs), 32, train=train, seed=3, scale=scale)
    assert len(dataset) == 40
    # both paths are taken: 32x32 and 40x32 JPEGs are cropped as 8-bit pixels (at scale 1), the rest item by item
    fast = [i for i in range(39) if isinstance(dataset._crop(i), np.ndarray)]  # 39 (cut short) is replaced
    assert (fast == [i for i in range(38) if i % 4 < 2]) if scale == (1.0, 1.0) else len(fast) < 19
    indices = [5, 0, 39, 17, 38, 2, 1, 5, 33]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        items = [dataset[i] for i in indices]
    fresh = ImageDataset(str(mixed_jpegs), 32, train=train, seed=3, scale=scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        together = fresh.__getitems__(indices)
    assert len(together) == len(items)
    for a, b in zip(together, items):
        assert torch.equal(a, b)
    # the loader fetches whole batches this way; epochs change the augmentation alike
    fresh.set_epoch(1), dataset.set_epoch(1)
    batch = next(iter(DataLoader(fresh, batch_size=8, num_workers=0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert torch.equal(batch, torch.stack([dataset[i] for i in range(8)]))


def test_training_batches_across_an_epoch_end_equal_item_by_item(mixed_jpegs):
    from repinv.data.stream import PositionSampler, TrainingSamples

    dataset = ImageDataset(str(mixed_jpegs), 32, train=True, seed=1)
    samples = TrainingSamples(dataset, None)
    virtuals = [next(iter(PositionSampler(40, seed=1, start=start))) for start in range(36, 44)]  # epochs 0 and 1
    assert {v // 40 for v in virtuals} == {0, 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        for a, b in zip(samples.__getitems__(virtuals), [samples[v] for v in virtuals]):
            assert torch.equal(a, b)


def test_tar_shards_glob_and_mixed_sources(tmp_path, photo_folder):
    shards = tmp_path / "shards"
    shards.mkdir()
    expected = {}
    for s in range(3):
        members = {}
        for k in range(4):
            image = _photo(10, 10, 10 * s + k)
            members[f"dir/{s}_{k}.PNG"] = _encoded(image)
            members[f"dir/{s}_{k}.cls"] = b"7"  # WebDataset side data: ignored
            expected[f"{shards}/train-{s}.tar:dir/{s}_{k}.PNG"] = image
        write_tar(shards / f"train-{s}.tar", members)
    dataset = ImageDataset(f"{shards}/train-*.tar", 10, train=False)
    assert len(dataset) == 12 and dataset.describe() == "12 images from 1 source"
    for i in range(len(dataset)):
        name = dataset.name(i)
        assert torch.equal(dataset[i], _as_tensor(expected[name])), name
    single = tmp_path / "one.bmp"
    _save(single, _photo(9, 9))
    with pytest.warns(DataWarning):
        mixed = ImageDataset([str(shards / "train-1.tar"), str(photo_folder), str(single)], 8, train=True)
    assert len(mixed) == 4 + 4 + 1 and mixed.describe().startswith("9 images from 3 sources")
    assert mixed.name(0).endswith("train-1.tar:dir/1_0.PNG") and mixed.name(8) == str(single)
    assert pickle.loads(pickle.dumps(mixed))[0].shape == (3, 8, 8)  # open shard handles are not pickled


def test_empty_tar_members_are_counted_and_compressed_tar_is_refused(tmp_path):
    write_tar(tmp_path / "s.tar", {"a.jpg": b"", "b.png": _encoded(_photo(4, 4))})
    with pytest.warns(DataWarning, match="skipped 1 unreadable image of 2"):
        assert len(ImageDataset(str(tmp_path / "s.tar"), 4, train=False)) == 1
    with tarfile.open(tmp_path / "z.tar", "w:gz") as archive:
        archive.add(_save(tmp_path / "x.png", _photo(4, 4)), "x.png")
    with pytest.raises(DataError, match="uncompressed"):
        ImageDataset(str(tmp_path / "z.tar"), 4, train=False)


def test_missing_and_empty_sources_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no readable images in .*empty.*builtin"):
        ImageDataset(str(tmp_path / "empty"), 8, train=True)
    with pytest.raises(DataError, match="does not exist"):
        ImageDataset(str(tmp_path / "missing"), 8, train=True)
    with pytest.raises(DataError, match="matches no files.*quoted glob"):
        ImageDataset(str(tmp_path / "shards-*.tar"), 8, train=True)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_text("nope")
    with pytest.raises(DataError, match="1 unreadable"):
        ImageDataset(str(tmp_path / "bad"), 8, train=True)
    with pytest.raises(DataError, match="no data source"):
        ImageDataset([], 8, train=True)
    with pytest.raises(DataError, match="builtin:test"):
        ImageDataset("builtin:nope", 8, train=True)


def test_builtin_split_is_disjoint():
    train = ImageDataset("builtin", 32, train=True, scale=(1.0, 2.0))
    test = ImageDataset("builtin:test", 32, train=False)
    every = ImageDataset("builtin:all", 32, train=False)
    train_names = {Path(train.name(i)).name for i in range(len(train))}
    test_names = {Path(test.name(i)).name for i in range(len(test))}
    assert train_names == set(BUILTIN_TRAIN) and test_names == set(BUILTIN_TEST)
    assert not train_names & test_names and len(test_names) >= 2
    assert len(every) == len(train) + len(test)
    assert train[0].shape == test[0].shape == (3, 32, 32)


# --- transforms and determinism ------------------------------------------------------------------------------------

def test_training_crops_are_deterministic_per_seed_epoch_index(tmp_path):
    for i in range(6):
        _save(tmp_path / "f" / f"{i}.png", _photo(24 + 5 * i, 16 + 3 * i, i))
    dataset = ImageDataset(str(tmp_path / "f"), (12, 10), train=True, seed=3)
    first = [dataset[i] for i in range(6)]
    assert all(x.shape == (3, 12, 10) for x in first)
    assert all(torch.equal(a, dataset[i]) for i, a in enumerate(first))
    dataset.set_epoch(1)
    assert any(not torch.equal(a, dataset[i]) for i, a in enumerate(first))
    dataset.set_epoch(0)
    assert all(torch.equal(a, dataset[i]) for i, a in enumerate(first))
    other_seed = ImageDataset(str(tmp_path / "f"), (12, 10), train=True, seed=4)
    assert any(not torch.equal(a, other_seed[i]) for i, a in enumerate(first))


def test_flip_happens_about_half_the_time(tmp_path):
    image = _photo(8, 8)
    _save(tmp_path / "a.png", image)
    dataset = ImageDataset(str(tmp_path / "a.png"), 8, train=True)  # exact size: the crop is the whole image
    plain = _as_tensor(image)
    flips = 0
    for epoch in range(40):
        dataset.set_epoch(epoch)
        item = dataset[0]
        assert torch.equal(item, plain) or torch.equal(item, plain.flip(-1))
        flips += torch.equal(item, plain.flip(-1))
    assert 8 <= flips <= 32


def test_augmentation_does_not_depend_on_workers(tmp_path):
    for i in range(8):
        _save(tmp_path / "f" / f"{i}.jpg", _photo(30, 20, i))
    write_tar(tmp_path / "s.tar", {f"{i}.png": _encoded(_photo(20, 30, 10 + i)) for i in range(4)})
    dataset = ImageDataset([str(tmp_path / "f"), str(tmp_path / "s.tar")], 16, train=True, seed=1, scale=(1.0, 1.5))
    dataset.set_epoch(2)
    serial = torch.cat(list(DataLoader(dataset, batch_size=3, num_workers=0)))  # leaves the shard open here
    parallel = torch.cat(list(DataLoader(dataset, batch_size=3, num_workers=2)))  # forked: each worker reopens it
    assert serial.shape == (12, 3, 16, 16) and torch.equal(serial, parallel)


def test_evaluation_resizes_shorter_side_and_centre_crops(tmp_path):
    wide = _save(tmp_path / "wide.png", _thirds(60, 20))
    tall = _save(tmp_path / "tall.png", _thirds(20, 60))
    images = load_images([wide, tall], 10)
    assert images.shape == (2, 3, 10, 10)
    means = images.mean(dim=(2, 3))
    assert (means[:, 1] > 0.9).all() and (means[:, [0, 2]] < 0.1).all()  # the middle third: centred
    dataset = ImageDataset([str(wide), str(tall)], (6, 12), train=False)
    assert torch.equal(dataset[0], dataset[0]) and dataset[1].shape == (3, 6, 12)


def test_small_images_are_upscaled_and_large_jpegs_downscaled(tmp_path):
    _save(tmp_path / "small.png", Image.new("RGB", (5, 7), RGB))
    _save(tmp_path / "large.jpg", Image.new("RGB", (800, 600), RGB), quality=95)
    for train in (True, False):
        dataset = ImageDataset(str(tmp_path), 32, train=train)
        for i in range(2):
            assert dataset[i].shape == (3, 32, 32)
            assert np.allclose(_colour(dataset[i]), RGB, atol=3)


def test_bad_options_are_refused(tmp_path):
    _save(tmp_path / "a.png", _photo(8, 8))
    for scale in [(0.5, 1.0), (2.0, 1.0)]:
        with pytest.raises(InvalidOption, match="scale"):
            ImageDataset(str(tmp_path), 8, train=True, scale=scale)
    with pytest.raises(InvalidOption, match="image_size"):
        ImageDataset(str(tmp_path), 0, train=True)
    with pytest.raises(IndexError):
        ImageDataset(str(tmp_path), 8, train=True)[1]


def test_load_images_names_the_bad_file(tmp_path):
    (tmp_path / "bad.png").write_text("nope")
    with pytest.raises(DataError, match="bad.png"):
        load_images([tmp_path / "bad.png"], 8)
    with pytest.raises(DataError, match="missing.jpg"):
        load_image(tmp_path / "missing.jpg")


def test_default_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("REPINV_SHARED_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("REPINV_SHARED_DATA")
    assert default_data_root().parts[-2:] == ("shared", "data")


@pytest.mark.slow
def test_real_train_shards():
    shards = default_data_root() / "tiny-imagenet-64"
    if not list(shards.glob("train-*.tar")):
        print(f"skipping: no shared data at {shards} (set REPINV_SHARED_DATA)")
        pytest.skip(f"no shared data at {shards}")
    dataset = ImageDataset(str(shards / "train-*.tar"), 64, train=True)
    assert len(dataset) == 50_500
    assert dataset.name(0).endswith("train-000.tar:n01443537_0.JPEG")
    for i in (0, 12_345, 50_499):
        image = dataset[i]
        assert image.shape == (3, 64, 64) and image.min() >= 0.0 and image.max() <= 1.0 and image.std() > 0.01


def test_small_jpegs_decode_like_pillow(tmp_path):
    from repinv.data.pixels import small_jpeg

    rng = np.random.default_rng(3)
    smooth = (np.cumsum(rng.integers(0, 9, (30, 40, 3)), axis=1) % 256).astype(np.uint8)
    for mode, array in (("RGB", smooth), ("L", smooth[..., 0])):
        buffer = io.BytesIO()
        Image.fromarray(array, mode).save(buffer, format="JPEG", quality=90)
        data = buffer.getvalue()
        fast = small_jpeg(data)
        slow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255
        assert fast is not None and fast.shape == (3, 30, 40)
        assert np.abs(fast.permute(1, 2, 0).numpy() - slow).max() <= 3 / 255
    assert small_jpeg(b"\x89PNG not a jpeg") is None
