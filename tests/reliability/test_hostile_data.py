"""Hostile image data: every case ends in pixels, a counted skip or one clear error line, never a traceback, and
never changes, deletes or creates a file of the user's.

Each case writes tiny images into its own input folder, hashes everything there (and, for tar members named to
escape, the places they name) before the code under test runs, and checks the hashes after. Decoding is checked on
both paths an :class:`~repinv.data.ImageDataset` takes: "cached" (at most 32 images, each decoded once by Pillow and
kept) and "streamed" (more: read and decoded per crop, small JPEGs through OpenCV); the streamed folders get 32 plain
filler images in a subfolder, indexed after the case's files.

What each case asserts:

* zero-byte file: skipped while indexing ("cannot identify image file"), counted in one DataWarning; a zero-byte tar
  member: skipped while indexing ("empty file");
* truncated JPEG (header intact, data cut): indexed, then skipped when decoded, replaced by the next image, counted
  as "truncated or corrupt" (Pillow and OpenCV both refuse it; it is never decoded with grey filler);
* text named .jpg: skipped while indexing ("cannot identify image file"); as a tar member (no header check while
  indexing): skipped when decoded, "not an image";
* CMYK JPEG: RGB exactly as Pillow converts it (OpenCV's own conversion is not used);
* 16-bit PNG: grayscale ``I;16`` divided by 65535; RGB 16-bit read at 8-bit precision (the high byte / 255);
* palette PNG with a transparent entry: that entry white, the others their colour;
* animated GIF and WebP: the first frame; a .gif in a folder is not indexed (not one of the accepted extensions);
* 1x1 image: resized up to the crop, one flat colour;
* decompression bomb (a header claiming more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``, including the range where
  Pillow only warns): skipped while indexing from the header alone, or, as a tar member, when decoded with the
  reason "decompression bomb (too many pixels)", never handed to a decoder;
* EXIF-rotated JPEG: orientation applied (equal to the stored pixels rotated by hand);
* dangling symlink, FIFO named .jpg: skipped while indexing, nothing blocks;
* symlink loop (a folder symlink to its parent): indexing ends and each image is indexed once, for a folder source
  and for a recursive glob (which follows the loop);
* unreadable permissions: skipped while indexing, or when decoded ("unreadable file"); skipped as root;
* empty folder, glob matching nothing: DataError, one line naming the source;
* tar shard cut inside a member: the members before the cut are read, the cut one is counted; a shard cut after
  indexing: the lost member is skipped when decoded ("truncated or corrupt");
* tar members named ``/tmp/...`` and ``../...``: read as images from the shard, nothing written anywhere;
* skips in forked data-loader workers are totalled in the parent (:func:`repinv.data.sources.skip_summary`);
* the CLI: ``repinv evaluate`` on truncated images prints one ``warning:`` line with the total and writes
  ``"skipped": N`` to evaluation.json; ``repinv train --data EMPTY`` prints one ``Error:`` line and exits 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import struct
import sys
import tarfile
import uuid
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_tar
from PIL import Image
from torch.utils.data import DataLoader, Subset

from repinv.cli import cli
from repinv.data import pixels
from repinv.data.sources import (
    DataWarning,
    DecodeWarning,
    ImageDataset,
    evaluation_loader,
    load_image,
    skip_summary,
)
from repinv.errors import DataError

#: Filler images that push a data set past the decoded cache (32 images), onto the streamed path.
FILLERS = 32
MODES = ["cached", "streamed"]


# --- helpers -------------------------------------------------------------------------------------------------------

def _snapshot(*roots: Path) -> dict[str, Any]:
    """Everything under ``roots`` (symlinks not followed): links with their targets, files with their mode, size,
    modification time and SHA-256 (None where unreadable), other entries with their type; a missing root as None."""
    state: dict[str, Any] = {}
    for root in roots:
        if not os.path.lexists(root):
            state[str(root)] = None
            continue
        for folder, dirs, files in os.walk(root):  # a symlink loop is listed, not entered
            for name in dirs + files:
                path = os.path.join(folder, name)
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    state[path] = ("link", os.readlink(path))
                elif stat.S_ISREG(info.st_mode):
                    try:
                        digest: str | None = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                    except PermissionError:
                        digest = None
                    state[path] = ("file", info.st_mode, info.st_size, info.st_mtime_ns, digest)
                else:
                    state[path] = ("other", info.st_mode)
    return state


@contextlib.contextmanager
def _untouched(*roots: Path) -> Iterator[None]:
    """Asserts that nothing under ``roots`` was changed, deleted or created inside the block."""
    before = _snapshot(*roots)
    yield
    assert _snapshot(*roots) == before


def _encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _as_tensor(pixels: np.ndarray) -> torch.Tensor:
    """8-bit (H, W, 3) RGB as (3, H, W) float in [0, 1]."""
    return torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)


def _truncated_jpeg(seed: int) -> bytes:
    """A 16x16 JPEG cut halfway through its scan data: the header parses, decoding fails."""
    data = _encoded(_noise(16, 16, seed), "JPEG", quality=90)
    scan = data.index(b"\xff\xda")
    return data[:(scan + len(data)) // 2]


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims ``width`` x ``height`` RGB pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small valid JPEG whose frame header is rewritten to claim ``width`` x ``height``."""
    data = bytearray(_encoded(Image.new("RGB", (8, 8), (90, 90, 90)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _folder(root: Path, files: dict[str, bytes], mode: str = "cached") -> Path:
    """``root`` holding ``files`` (the case's files, indexed first) and, when streamed, the fillers after them."""
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    if mode == "streamed":
        _fillers(root / "zz-fillers")
    return root


def _fillers(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(FILLERS):
        (folder / f"{i:02d}.png").write_bytes(_encoded(Image.new("RGB", (8, 8), (i, 2 * i, 3 * i)), "PNG"))


def _tar(path: Path, members: dict[str, bytes], mode: str = "cached") -> Path:
    """A shard of ``members`` (in order) and, when streamed, the fillers after them."""
    if mode == "streamed":
        members = {**members, **{f"zz-filler-{i:02d}.png": _encoded(Image.new("RGB", (8, 8), (i, i, i)), "PNG")
                                 for i in range(FILLERS)}}
    return write_tar(path, members)


def _dataset(source: Path | str, size: int | tuple[int, int], mode: str, train: bool = False) -> ImageDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # indexing these sources warns about nothing
        dataset = ImageDataset(str(source), size, train=train)
    assert (len(dataset) > FILLERS) == (mode == "streamed")
    return dataset


def _item(dataset: ImageDataset, name: str) -> int:
    """The index of the image whose name ends with ``name``."""
    matches = [i for i in range(len(dataset)) if dataset.name(i).endswith(name)]
    assert len(matches) == 1, matches
    return matches[0]


def _data_warnings(record: Any) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


def _one_line(error: pytest.ExceptionInfo[DataError]) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


# --- files that fail while indexing ---------------------------------------------------------------------------------

def test_zero_byte_file_is_skipped_while_indexing(tmp_path):
    folder = _folder(tmp_path / "in", {"empty.jpg": b"", "good.png": _encoded(_noise(8, 8), "PNG")})
    with _untouched(tmp_path), pytest.warns(DataWarning) as record:
        dataset = ImageDataset(str(folder), 8, train=False)
        assert len(dataset) == 1 and dataset.name(0).endswith("good.png") and dataset.skipped == 1
        assert dataset[0].shape == (3, 8, 8) and dataset.decode_failures() == {}
    assert _data_warnings(record) == [
        f"skipped 1 unreadable image of 2 in '{folder}' (first: {folder / 'empty.jpg'}: cannot identify image file)"]


def test_zero_byte_tar_member_is_skipped_while_indexing(tmp_path):
    shard = _tar(tmp_path / "in" / "s.tar", {"empty.jpg": b"", "good.png": _encoded(_noise(8, 8), "PNG")})
    with _untouched(tmp_path), pytest.warns(DataWarning, match=r"skipped 1 unreadable image of 2 .*empty\.jpg: "
                                                               "empty file"):
        dataset = ImageDataset(str(shard), 8, train=False)
        assert len(dataset) == 1 and dataset[0].shape == (3, 8, 8)


def test_text_named_jpg_is_skipped_while_indexing(tmp_path):
    folder = _folder(tmp_path / "in", {"notes.jpg": b"these are not pixels\n",
                                       "good.png": _encoded(_noise(8, 8), "PNG")})
    with _untouched(tmp_path), pytest.warns(DataWarning, match=r"notes\.jpg: cannot identify image file"):
        dataset = ImageDataset(str(folder), 8, train=False)
    assert len(dataset) == 1 and dataset.skipped == 1


@pytest.mark.parametrize("mode", MODES)
def test_text_tar_member_named_jpg_is_skipped_when_decoded(tmp_path, mode):
    good = _noise(8, 8, 1)
    shard = _tar(tmp_path / "in" / "s.tar", {"a-notes.jpg": b"these are not pixels\n", "b.png": _encoded(good, "PNG")},
                 mode)
    with _untouched(tmp_path):
        dataset = _dataset(shard, 8, mode)  # members are checked by extension only while indexing
        with pytest.warns(DecodeWarning, match="a-notes.jpg: cannot identify image file"):
            replaced = dataset[0]
        assert torch.equal(replaced, _as_tensor(np.asarray(good)))  # the next image instead
        assert dataset.decode_failures() == {"not an image": [f"{shard}:a-notes.jpg"]}
        assert skip_summary(dataset, "training") == \
            f"skipped 1 image that failed to decode during training: 1 not an image ({shard}:a-notes.jpg)"


def test_dangling_symlink_is_skipped_while_indexing(tmp_path):
    folder = _folder(tmp_path / "in", {"good.png": _encoded(_noise(8, 8), "PNG")})
    (folder / "gone.jpg").symlink_to(tmp_path / "in" / "nowhere.jpg")
    with _untouched(tmp_path), pytest.warns(DataWarning, match=r"gone\.jpg: No such file or directory"):
        dataset = ImageDataset(str(folder), 8, train=False)
    assert len(dataset) == 1 and dataset.skipped == 1


def test_fifo_named_jpg_is_skipped_without_blocking(tmp_path):
    folder = _folder(tmp_path / "in", {"good.png": _encoded(_noise(8, 8), "PNG")})
    os.mkfifo(folder / "pipe.jpg")  # opening it to read would wait for a writer forever
    with _untouched(tmp_path), pytest.warns(DataWarning, match=r"pipe\.jpg: not a regular file"):
        dataset = ImageDataset(str(folder), 8, train=False)
    assert len(dataset) == 1


def _skip_as_root() -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: permissions do not block reads")


def test_unreadable_file_is_skipped_while_indexing_or_when_decoded(tmp_path):
    _skip_as_root()
    folder = _folder(tmp_path / "in", {"a.png": _encoded(_noise(8, 8, 0), "PNG"),
                                       "b.png": _encoded(_noise(8, 8, 1), "PNG"),
                                       "c.png": _encoded(_noise(8, 8, 2), "PNG")})
    (folder / "a.png").chmod(0)
    try:
        with _untouched(tmp_path), pytest.warns(DataWarning, match=r"a\.png: Permission denied"):
            dataset = ImageDataset(str(folder), 8, train=False)
        assert len(dataset) == 2
        (folder / "b.png").chmod(0)  # after indexing: found when decoded
        with _untouched(tmp_path):
            with pytest.warns(DecodeWarning, match=r"b\.png: Permission denied"):
                assert torch.equal(dataset[0], dataset[1])
            assert dataset.decode_failures() == {"unreadable file": [str(folder / "b.png")]}
    finally:
        for name in ("a.png", "b.png"):
            (folder / name).chmod(0o644)


# --- truncated data -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_truncated_jpeg_is_skipped_when_decoded_and_counted(tmp_path, mode):
    nxt = _noise(16, 16, 5)
    folder = _folder(tmp_path / "in", {"a-cut.jpg": _truncated_jpeg(1), "b-cut.jpg": _truncated_jpeg(2),
                                       "c.png": _encoded(nxt, "PNG")}, mode)
    with _untouched(tmp_path):
        dataset = _dataset(folder, 16, mode)  # the header parses: indexed
        assert len(dataset) == 3 + FILLERS * (mode == "streamed")
        with pytest.warns(DecodeWarning) as record:
            first = dataset[0]
        assert torch.equal(first, _as_tensor(np.asarray(nxt)))  # both cut images skipped, the PNG instead
        messages = [str(w.message) for w in record]
        assert len(messages) == 2
        for message, name in zip(messages, ("a-cut.jpg", "b-cut.jpg")):
            assert message.startswith(f"skipping unreadable image {folder / name}: image file is truncated (")
            assert message.endswith("(using the next image instead)")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # each is warned about once
            assert torch.equal(dataset[1], first)
        assert dataset.decode_failures() == {"truncated or corrupt": [str(folder / "a-cut.jpg"),
                                                                      str(folder / "b-cut.jpg")]}
        assert skip_summary(dataset, "evaluation") == (
            f"skipped 2 images that failed to decode during evaluation: 2 truncated or corrupt "
            f"(first: {folder / 'a-cut.jpg'})")


def test_truncated_jpeg_is_refused_by_both_decoders():
    data = _truncated_jpeg(3)
    assert pixels.small_jpeg_bgr(data) is None  # OpenCV gives up: Pillow decides
    with pytest.raises(OSError, match="truncated"), Image.open(io.BytesIO(data)) as image:
        image.load()


def test_tar_shard_cut_inside_a_member_keeps_the_members_before(tmp_path):
    images = [_noise(8, 8, seed) for seed in range(4)]
    full = _tar(tmp_path / "full.tar", {f"k{i}.png": _encoded(image, "PNG") for i, image in enumerate(images)})
    with tarfile.open(full) as archive:
        cut_at = archive.getmember("k2.png").offset_data + 20
    shard = tmp_path / "in" / "cut.tar"
    shard.parent.mkdir()
    shard.write_bytes(full.read_bytes()[:cut_at])
    with _untouched(tmp_path), pytest.warns(DataWarning) as record:
        dataset = ImageDataset(str(shard), 8, train=False)
        assert [dataset.name(i) for i in range(len(dataset))] == [f"{shard}:k0.png", f"{shard}:k1.png"]
        for i in range(2):
            assert torch.equal(dataset[i], _as_tensor(np.asarray(images[i])))
    size = len(_encoded(images[2], "PNG"))
    assert _data_warnings(record) == [f"skipped 1 unreadable image of 3 in '{shard}' (first: {shard}:k2.png: the "
                                      f"shard is cut short inside it (20 of {size} bytes))"]
    assert dataset.skipped == 1 and dataset.decode_failures() == {}


@pytest.mark.parametrize("mode", MODES)
def test_tar_shard_cut_after_indexing_skips_the_lost_member_when_decoded(tmp_path, mode):
    images = [_noise(8, 8, seed) for seed in range(3)]
    shard = _tar(tmp_path / "in" / "s.tar", {f"k{i}.png": _encoded(image, "PNG") for i, image in enumerate(images)},
                 mode)
    dataset = _dataset(shard, 8, mode)
    with tarfile.open(shard) as archive:
        cut_at = archive.getmember("k1.png").offset_data + 10
    shard.write_bytes(shard.read_bytes()[:cut_at])  # cut after indexing (the shard is the test's own file)
    with _untouched(tmp_path):
        with pytest.warns(DecodeWarning) as record:
            replaced = dataset[1]  # k1 and everything after it are gone: the first image instead
        assert str(record[0].message).startswith(f"skipping unreadable image {shard}:k1.png: tar member truncated")
        assert torch.equal(replaced, _as_tensor(np.asarray(images[0])))
        lost = dataset.decode_failures()["truncated or corrupt"]
        assert lost[:2] == [f"{shard}:k1.png", f"{shard}:k2.png"] and len(lost) == len(dataset) - 1


# --- colour modes ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_cmyk_jpeg_is_converted_as_pillow_converts_it(tmp_path, mode):
    rng = np.random.default_rng(4)
    cmyk = Image.fromarray(np.repeat(np.repeat(rng.integers(0, 256, (4, 4, 4), dtype=np.uint8), 4, 0), 4, 1), "CMYK")
    folder = _folder(tmp_path / "in", {"cmyk.jpg": _encoded(cmyk, "JPEG", quality=95)}, mode)
    with Image.open(folder / "cmyk.jpg") as image:
        assert image.mode == "CMYK"
        expected = _as_tensor(np.asarray(image.convert("RGB")))
    with _untouched(tmp_path):
        dataset = _dataset(folder, 16, mode)
        assert torch.equal(dataset[_item(dataset, "cmyk.jpg")], expected)
        assert torch.equal(load_image(folder / "cmyk.jpg"), expected)


@pytest.mark.parametrize("mode", MODES)
def test_sixteen_bit_grayscale_png_is_divided_by_65535(tmp_path, mode):
    values = np.array([[0, 1000, 32896, 65535]], np.uint16).repeat(4, 0)
    folder = _folder(tmp_path / "in", {"gray16.png": _encoded(Image.fromarray(values), "PNG")}, mode)
    with Image.open(folder / "gray16.png") as image:
        assert image.mode == "I;16"
    expected = torch.from_numpy(values.astype(np.float32) / 65535).expand(3, 4, 4)
    with _untouched(tmp_path):
        dataset = _dataset(folder, 4, mode)
        assert torch.allclose(dataset[_item(dataset, "gray16.png")], expected, atol=1e-6, rtol=0)
        assert torch.allclose(load_image(folder / "gray16.png"), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_sixteen_bit_rgb_png_is_read_at_eight_bit_precision(tmp_path, mode):
    values = np.array([[0, 1000, 32896, 65535]], np.uint16).repeat(4, 0)
    rgb = np.stack([values, values[:, ::-1], np.full_like(values, 40000)], axis=-1)
    folder = _folder(tmp_path / "in", {}, mode)
    assert cv2.imwrite(str(folder / "rgb16.png"), rgb[..., ::-1].copy())  # Pillow cannot write 16-bit colour
    expected = _as_tensor((rgb >> 8).astype(np.uint8))  # the high byte of each value
    with _untouched(tmp_path):
        dataset = _dataset(folder, 4, mode)
        decoded = dataset[_item(dataset, "rgb16.png")]
        assert torch.equal(decoded, expected)
        assert torch.allclose(decoded, torch.from_numpy(rgb.astype(np.float32) / 65535).permute(2, 0, 1),
                              atol=1 / 255, rtol=0)  # within one 8-bit step of the 16-bit value
        assert torch.equal(load_image(folder / "rgb16.png"), expected)


@pytest.mark.parametrize("mode", MODES)
def test_palette_png_with_a_transparent_entry_is_composited_over_white(tmp_path, mode):
    palette = Image.new("P", (4, 4))
    palette.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    palette.paste(1, (2, 0, 4, 4))  # right half: entry 1; left half: entry 0, transparent
    folder = _folder(tmp_path / "in", {"pt.png": _encoded(palette, "PNG", transparency=0)}, mode)
    expected = np.empty((4, 4, 3), np.uint8)
    expected[:, :2], expected[:, 2:] = 255, (40, 50, 60)
    with _untouched(tmp_path):
        dataset = _dataset(folder, 4, mode)
        assert torch.equal(dataset[_item(dataset, "pt.png")], _as_tensor(expected))
        assert torch.equal(load_image(folder / "pt.png"), _as_tensor(expected))


_FRAMES = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def _animation(fmt: str, **options: Any) -> bytes:
    frames = [Image.new("RGB", (8, 8), colour) for colour in _FRAMES]
    return _encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **options)


@pytest.mark.parametrize("mode", MODES)
def test_animated_images_give_their_first_frame(tmp_path, mode):
    folder = _folder(tmp_path / "in", {"anim.webp": _animation("WEBP", lossless=True),
                                       "anim.gif": _animation("GIF", loop=0)}, mode)
    with Image.open(folder / "anim.webp") as webp, Image.open(folder / "anim.gif") as gif:
        assert getattr(webp, "n_frames", 1) == getattr(gif, "n_frames", 1) == 3
    first = torch.tensor(_FRAMES[0], dtype=torch.float32).div(255)[:, None, None].expand(3, 8, 8)
    with _untouched(tmp_path):
        dataset = _dataset(folder, 8, mode)
        assert not any(dataset.name(i).endswith(".gif") for i in range(len(dataset)))  # not an accepted extension
        assert torch.equal(dataset[_item(dataset, "anim.webp")], first)
        assert torch.equal(load_image(folder / "anim.gif"), first)  # any format Pillow reads, one by one
        assert torch.equal(load_image(folder / "anim.webp"), first)


def test_a_folder_of_gifs_only_is_an_error(tmp_path):
    folder = _folder(tmp_path / "in", {"anim.gif": _animation("GIF", loop=0)})
    with _untouched(tmp_path), pytest.raises(DataError) as error:
        ImageDataset(str(folder), 8, train=False)
    assert _one_line(error).startswith(f"no readable images in '{folder}'")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("train", [False, True])
def test_one_pixel_images_are_resized_up_to_the_crop(tmp_path, mode, train):
    colour = (10, 200, 30)
    folder = _folder(tmp_path / "in", {"one.png": _encoded(Image.new("RGB", (1, 1), colour), "PNG"),
                                       "one.jpg": _encoded(Image.new("RGB", (1, 1), colour), "JPEG", quality=100)},
                     mode)
    with _untouched(tmp_path):
        dataset = _dataset(folder, (16, 12), mode, train=train)
        for name, tolerance in (("one.png", 1e-6), ("one.jpg", 3 / 255)):
            image = dataset[_item(dataset, name)]
            assert image.shape == (3, 16, 12)
            flat = torch.tensor(colour, dtype=torch.float32).div(255)[:, None, None].expand(3, 16, 12)
            assert torch.allclose(image, flat, atol=tolerance, rtol=0), name


_QUADRANTS = np.zeros((16, 32, 3), np.uint8)  # 32 wide, 16 high: four flat blocks of different colours
_QUADRANTS[:8, :16], _QUADRANTS[:8, 16:], _QUADRANTS[8:, :16], _QUADRANTS[8:, 16:] = \
    (230, 30, 30), (30, 230, 30), (30, 30, 230), (230, 230, 30)
#: EXIF orientation -> the transpose that shows the stored pixels upright
_UPRIGHT = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270, 8: Image.Transpose.ROTATE_90}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("orientation", sorted(_UPRIGHT))
def test_exif_rotated_jpeg_is_shown_upright(tmp_path, mode, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    folder = _folder(tmp_path / "in", {"rotated.jpg": _encoded(Image.fromarray(_QUADRANTS), "JPEG", quality=95,
                                                                exif=exif.tobytes())}, mode)
    with Image.open(folder / "rotated.jpg") as stored:  # the pixels as stored, rotated by hand
        upright = np.asarray(stored.convert("RGB").transpose(_UPRIGHT[orientation]))
    expected = _as_tensor(upright)
    height, width = upright.shape[:2]
    with _untouched(tmp_path):
        dataset = _dataset(folder, (height, width), mode)  # the crop is the whole upright image
        image = dataset[_item(dataset, "rotated.jpg")]
        assert image.shape == expected.shape
        assert (image - expected).abs().max() <= 4 / 255  # OpenCV (streamed) and Pillow decode within a step or so
        assert torch.equal(load_image(folder / "rotated.jpg"), expected)
    assert expected.shape[1:] == ((16, 32) if orientation == 3 else (32, 16))


# --- decompression bombs --------------------------------------------------------------------------------------------

def test_bomb_header_in_a_folder_is_skipped_while_indexing(tmp_path):
    folder = _folder(tmp_path / "in", {"bomb.png": _png_claiming(100_000, 100_000),
                                       "good.png": _encoded(_noise(8, 8), "PNG")})
    with _untouched(tmp_path), pytest.warns(DataWarning) as record:
        dataset = ImageDataset(str(folder), 8, train=False)
    assert len(dataset) == 1 and dataset.skipped == 1
    [message] = _data_warnings(record)
    assert "bomb.png: Image size (10000000000 pixels) exceeds limit" in message and "decompression bomb" in message


@pytest.mark.parametrize("mode", MODES)
def test_bomb_tar_member_is_skipped_when_decoded_and_never_decoded(tmp_path, mode, monkeypatch):
    good = _noise(8, 8)
    shard = _tar(tmp_path / "in" / "s.tar", {"a-bomb.png": _png_claiming(100_000, 100_000),
                                             "b-bomb.jpg": _jpeg_claiming(20_000, 20_000),
                                             "c.png": _encoded(good, "PNG")}, mode)
    decoded: list[int] = []
    imdecode = cv2.imdecode

    def spy(data: np.ndarray, flags: int) -> Any:
        decoded.append(len(data))
        return imdecode(data, flags)

    monkeypatch.setattr(cv2, "imdecode", spy)
    with _untouched(tmp_path):
        dataset = _dataset(shard, 8, mode)
        with pytest.warns(DecodeWarning):
            assert torch.equal(dataset[0], _as_tensor(np.asarray(good)))
        assert dataset.decode_failures() == {"decompression bomb (too many pixels)": [f"{shard}:a-bomb.png",
                                                                                      f"{shard}:b-bomb.jpg"]}
        assert skip_summary(dataset, "training") == (
            f"skipped 2 images that failed to decode during training: 2 decompression bomb (too many pixels) "
            f"(first: {shard}:a-bomb.png)")
    assert decoded == []  # the claimed size was refused before OpenCV saw the data


def test_images_where_pillow_only_warns_are_refused_too(tmp_path, monkeypatch):
    """Pillow warns between MAX_IMAGE_PIXELS and twice that, and would decode: repinv refuses from the header."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    small = Image.new("RGB", (8, 8), (1, 2, 3))  # 64 pixels: fine
    over = _noise(12, 10)  # 120 pixels: over the limit, under twice it
    folder = _folder(tmp_path / "in", {"over.png": _encoded(over, "PNG"), "small.png": _encoded(small, "PNG")})
    shard = _tar(tmp_path / "in" / "s.tar", {"over.png": _encoded(over, "PNG"), "over.jpg": _encoded(over, "JPEG"),
                                             "small.png": _encoded(small, "PNG")}, "streamed")
    with _untouched(tmp_path):
        with pytest.warns(DataWarning) as record:
            dataset = ImageDataset(str(folder), 8, train=False)
        assert len(dataset) == 1
        assert not [w for w in record if issubclass(w.category, Image.DecompressionBombWarning)]
        assert "over.png: Image size (120 pixels) exceeds limit of 100 pixels" in _data_warnings(record)[0]
        streamed = _dataset(shard, 8, "streamed")
        with pytest.warns(DecodeWarning) as record:
            assert torch.equal(streamed[0], _as_tensor(np.asarray(small)))
        assert not [w for w in record if issubclass(w.category, Image.DecompressionBombWarning)]
        assert streamed.decode_failures() == {"decompression bomb (too many pixels)": [f"{shard}:over.png",
                                                                                       f"{shard}:over.jpg"]}
        with pytest.raises(DataError, match="over.png.*exceeds limit of 100"):
            load_image(folder / "over.png")


# --- symlink loops, empty sources, globs ----------------------------------------------------------------------------

def test_symlink_loop_ends_and_indexes_each_image_once(tmp_path):
    folder = _folder(tmp_path / "in", {"a.png": _encoded(_noise(8, 8, 0), "PNG")})
    _folder(folder / "sub", {"b.png": _encoded(_noise(8, 8, 1), "PNG")})
    (folder / "sub" / "up").symlink_to("..", target_is_directory=True)
    (folder / "sub" / "again.png").symlink_to(folder / "a.png")  # the same file under a second name
    with _untouched(tmp_path):
        walked = _dataset(folder, 8, "cached")
        assert [walked.name(i) for i in range(len(walked))] == [str(folder / "a.png"), str(folder / "sub" / "b.png")]
        globbed = _dataset(f"{folder}/**/*.png", 8, "cached")  # ** follows the loop up to the kernel's limit
        assert [globbed.name(i) for i in range(len(globbed))] == [str(folder / "a.png"),
                                                                  str(folder / "sub" / "b.png")]


def test_empty_folder_is_one_clear_error(tmp_path):
    (tmp_path / "in" / "empty").mkdir(parents=True)
    with _untouched(tmp_path), pytest.raises(DataError) as error:
        ImageDataset(str(tmp_path / "in" / "empty"), 8, train=True)
    message = _one_line(error)
    assert message.startswith(f"no readable images in '{tmp_path / 'in' / 'empty'}'; a source is a folder of images")


def test_glob_matching_nothing_is_one_clear_error_naming_it(tmp_path):
    (tmp_path / "in").mkdir()
    pattern = f"{tmp_path}/in/train-*.tar"
    with _untouched(tmp_path), pytest.raises(DataError) as error:
        ImageDataset(pattern, 8, train=True)
    assert _one_line(error).startswith(f"data source '{pattern}' matches no files; ")


# --- tar members that name places outside the shard -----------------------------------------------------------------

def test_tar_members_with_absolute_and_parent_paths_are_read_and_never_written(tmp_path, monkeypatch):
    tag = uuid.uuid4().hex
    images = {f"/tmp/repinv-hostile-{tag}.png": _noise(8, 8, 0), f"../repinv-hostile-{tag}.png": _noise(8, 8, 1),
              f"a/../../../repinv-hostile-deep-{tag}.png": _noise(8, 8, 2)}
    shard = _tar(tmp_path / "in" / "s.tar", {name: _encoded(image, "PNG") for name, image in images.items()})
    work = tmp_path / "work"  # the current folder, where a relative member would land if extracted
    work.mkdir()
    monkeypatch.chdir(work)
    watched = [tmp_path, Path(f"/tmp/repinv-hostile-{tag}.png"), Path(f"/repinv-hostile-{tag}.png"),
               Path(f"/repinv-hostile-deep-{tag}.png")]
    parent_before = sorted(os.listdir(tmp_path.parent))
    with _untouched(*watched):
        dataset = _dataset(shard, 8, "cached")
        assert [dataset.name(i) for i in range(len(dataset))] == [f"{shard}:{name}" for name in images]
        for i, image in enumerate(images.values()):
            assert torch.equal(dataset[i], _as_tensor(np.asarray(image)))
        loader = evaluation_loader(dataset, 8, batch_size=2, workers=0)
        assert sum(len(batch) for batch in loader) == 3
    assert sorted(os.listdir(tmp_path.parent)) == parent_before and list(work.iterdir()) == []
    assert all(not path.exists() for path in watched[1:])


# --- totals across data-loader workers ------------------------------------------------------------------------------

def test_skips_in_forked_workers_are_totalled_in_the_parent(tmp_path):
    folder = _folder(tmp_path / "in", {f"{i:02d}.png": _encoded(_noise(8, 8, i), "PNG") for i in range(40)})
    (folder / "05.jpg").write_bytes(_truncated_jpeg(1))
    shard = _tar(tmp_path / "shards" / "s.tar", {"notes.jpg": b"not an image", "x.png": _encoded(_noise(8, 8), "PNG")})
    with _untouched(tmp_path):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dataset = ImageDataset([str(folder), str(shard)], 8, train=False)
        assert len(dataset) == 43
        assert skip_summary(dataset, "evaluation") is None and dataset.decode_failures() == {}
        loader = DataLoader(dataset, batch_size=4, num_workers=2, multiprocessing_context="fork")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DecodeWarning)
            assert sum(len(batch) for batch in loader) == 43
        assert dataset.decode_failures() == {"truncated or corrupt": [str(folder / "05.jpg")],
                                             "not an image": [f"{shard}:notes.jpg"]}
        summary = (f"skipped 2 images that failed to decode during evaluation: 1 truncated or corrupt "
                   f"({folder / '05.jpg'}), 1 not an image ({shard}:notes.jpg)")
        assert skip_summary(dataset, "evaluation") == summary
        assert skip_summary(loader, "evaluation") == summary  # reached through .dataset
        assert skip_summary(Subset(dataset, range(3)), "evaluation") == summary
        assert skip_summary(torch.utils.data.TensorDataset(torch.zeros(2)), "evaluation") is None


# --- the command line -----------------------------------------------------------------------------------------------

def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _print_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                   file: Any = None, line: str | None = None) -> None:
    """Python's own way of showing a warning (pytest records them instead): stderr, through formatwarning."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@pytest.fixture(scope="module")
def hostile_tiny_run(tmp_path_factory: pytest.TempPathFactory, photo_folder: Path) -> Path:
    run = tmp_path_factory.mktemp("hostile-runs") / "hog"
    result = _cli("train", "--rep", "hog", "--data", str(photo_folder), "--image-size", "16", "--width", "0.05",
                  "--steps", "1", "--workers", "0", "--out", str(run), "--quiet")
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.parametrize("workers", [0, 2])
def test_cli_evaluate_on_truncated_images_warns_once_with_the_total(tmp_path, hostile_tiny_run, photo_folder,
                                                                    monkeypatch, workers):
    monkeypatch.setattr(warnings, "showwarning", _print_warning)
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # the CLI replaces it: restored after
    photos = sorted(photo_folder.glob("*.png"))[:4]
    folder = _folder(tmp_path / "in", {"bad-1.jpg": _truncated_jpeg(1), "bad-2.jpg": _truncated_jpeg(2),
                                       **{photo.name: photo.read_bytes() for photo in photos}})
    out = tmp_path / "out" / "evaluation.json"
    with _untouched(tmp_path / "in"):
        result = _cli("evaluate", "--checkpoint", str(hostile_tiny_run), "--data", str(folder), "--workers",
                      str(workers), "--device", "cpu", "--out", str(out), "--grid", str(tmp_path / "out" / "grid.png"))
    assert result.exit_code == 0, result.output
    warning_lines = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warning_lines == [f"warning: skipped 2 images that failed to decode during evaluation: 2 truncated or "
                             f"corrupt (first: {folder / 'bad-1.jpg'})"], result.output
    assert "Traceback" not in result.output
    written = json.loads(out.read_text())
    assert written["skipped"] == 2 and written["images"] == 6


def test_cli_train_on_an_empty_folder_is_one_error_line(tmp_path):
    empty = tmp_path / "in" / "empty"
    empty.mkdir(parents=True)
    with _untouched(tmp_path / "in"):
        result = _cli("train", "--rep", "hog", "--data", str(empty), "--image-size", "16", "--width", "0.05",
                      "--steps", "1", "--workers", "0", "--quiet", "--out", str(tmp_path / "run"))
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"Error: no readable images in '{empty}'"), result.output
