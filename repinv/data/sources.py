"""Image data: sources, decoding to RGB, and the training / evaluation data set.

A *source* is one string:

* a folder of images, searched recursively: JPEG, PNG, BMP, WebP, TIFF, extensions in any case. Names starting
  with ``.`` are skipped (``.git``, ``.ipynb_checkpoints``, macOS ``._photo.jpg`` resource forks);
* one image file;
* an uncompressed ``.tar`` shard, or a glob of shards or images (quote it so the shell leaves it alone:
  ``'shards/train-*.tar'``). The WebDataset convention: one member per image, ``<key>.jpg`` etc.; other members
  (``<key>.cls``, ``<key>.json``) are ignored;
* ``builtin``, ``builtin:test`` or ``builtin:all``: colour photographs that ship inside scikit-image, read from
  its package folder (no download). The split is fixed: ``builtin`` = astronaut, motorcycle_left,
  motorcycle_right, hubble_deep_field, rocket; ``builtin:test`` = chelsea, coffee; ``builtin:all`` = both. The
  motorcycle stereo pair stays on one side so that no test photo has a near-duplicate in training. The night
  photo (rocket) trains: with it held out, four training photos had no dark scene at all. Grayscale,
  microscopy and synthetic images (camera, retina, immunohistochemistry, colorwheel, logo, …) are left out.

Every image becomes RGB float32 in [0, 1]: grayscale is repeated over the channels; 16-bit grayscale (``I;16``,
and ``I``, which Pillow uses for 16-bit data) is divided by 65535; ``F`` is clipped to [0, 1]; palette, CMYK and
the rest go through Pillow's RGB conversion; anything with transparency (RGBA, LA, palette with a transparent
entry) is composited over **white**, the background most such images are made to be seen on. Pillow reads 16-bit
colour PNG/TIFF at 8-bit precision (correctly scaled). EXIF orientation is applied.

Unreadable files are skipped: a file whose header Pillow cannot parse, that is not a regular file (a FIFO, a
dangling symlink) or that claims more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (a decompression bomb: raise
Pillow's limit for larger photos) is dropped while indexing, counted in one :class:`DataWarning` per source. The
same file reached twice within a source (through a symlink, or a recursive glob through a symlinked folder) is
indexed once. Tar members are checked by extension only while indexing (a header check would read the whole
shard); a shard cut short (an interrupted download) keeps the members before the cut and counts the cut one. An
image that fails to decode later is replaced by the next readable image (one :class:`DecodeWarning` per image) and
recorded with its reason (one of :data:`DECODE_FAILURES`) in memory shared with forked data-loader workers: see
:meth:`ImageDataset.decode_failures` and :func:`skip_summary`, the one-line total that the code running a loader
warns with. A source without a single readable image raises :class:`~repinv.errors.DataError`.

The index (:mod:`repinv.data.indexing`) is compact arrays; tar shards are opened lazily in each process and read by
seek + read.
"""

from __future__ import annotations

import io
import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from repinv.data.indexing import (
    ACCEPTED_SOURCES,
    BUILTIN_TEST,
    BUILTIN_TRAIN,
    DECODE_ERRORS,
    IMAGE_EXTENSIONS,
    DataWarning,
    Index,
    Strings,
    index_source,
    reason,
)
from repinv.data.pixels import (
    covering_size,
    crop_box,
    crop_pixels,
    decode_covering,
    eight_bit_to_float,
    open_image,
    resize_pixels,
    rgb_pixels,
    small_jpeg_bgr,
)
from repinv.errors import DataError
from repinv.options import Option, option_error, size_pair
from repinv.utils import keyed_generator

__all__ = [
    "DataWarning",
    "DecodeWarning",
    "DECODE_FAILURES",
    "ImageDataset",
    "skip_summary",
    "find_image_dataset",
    "IMAGE_EXTENSIONS",
    "BUILTIN_TRAIN",
    "BUILTIN_TEST",
    "load_image",
    "load_images",
    "evaluation_loader",
    "keyed_generator",
    "default_data_root",
]

#: ``ImageDataset``'s ``scale``; at least 1, as a smaller image would not cover the crop.
_SCALE = Option("scale", (1.0, 1.0), float, "range of the random up-scaling before the crop", minimum=1, length=2)
#: Tar shards kept open per process: enough for random access over a large shard set, well below fd limits.
_MAX_OPEN_SHARDS = 64
_DECODED_CACHE_LIMIT = 32  # data sets this small keep their decoded images in memory (see ImageDataset._decoded)
#: Why an image failed to decode, as :meth:`ImageDataset.decode_failures` and :func:`skip_summary` say it; the
#: shared record stores position + 1 (0: not failed).
DECODE_FAILURES = ("truncated or corrupt", "not an image", "decompression bomb (too many pixels)", "unreadable file")




class DecodeWarning(DataWarning):
    """One image failed to decode and was replaced by the next one (once per image). Code that reports the total
    with :func:`skip_summary` ignores this category while its loader runs."""










def _failure_code(error: BaseException) -> int:
    """The :data:`DECODE_FAILURES` code (position + 1) of a decode error."""
    if isinstance(error, Image.DecompressionBombError):
        reason = "decompression bomb (too many pixels)"
    elif isinstance(error, UnidentifiedImageError):
        reason = "not an image"
    elif isinstance(error, OSError) and error.errno is not None:  # missing, permission denied, I/O error
        reason = "unreadable file"
    else:  # Pillow's truncated / broken data, a tar member cut short, bad headers
        reason = "truncated or corrupt"
    return DECODE_FAILURES.index(reason) + 1


















class ImageDataset(Dataset[Tensor]):
    """Images from folders, tar shards, files or ``builtin``, as RGB float tensors (map-style).

    Training items are resized so the shorter side covers the crop (times a random factor from ``scale``),
    cropped at random and flipped with probability 1/2. The randomness of item ``i`` comes from a generator
    seeded with ``(seed, epoch, i)`` only, so it does not depend on workers, batch composition or resumption.
    Evaluation items are resized the same way (factor 1) and centre-cropped.

    Args:
        sources: one source or several (see the module docstring).
        image_size: crop size, ``S`` or ``(height, width)``.
        train: random crop and flip (True) or centre crop (False).
        seed: seeds the augmentation.
        scale: ``(lo, hi)`` with ``1 <= lo <= hi``: range of the random up-scaling before the crop (train only).

    Raises:
        DataError: a source is missing, matches nothing or holds no readable image.
        InvalidOption: a bad ``image_size`` or ``scale``.
    """

    def __init__(self, sources: str | Sequence[str], image_size: int | tuple[int, int], train: bool, seed: int = 0,
                 scale: tuple[float, float] = (1.0, 1.0)) -> None:
        self.sources = [sources] if isinstance(sources, str) else list(sources)
        if not self.sources:
            raise DataError(f"no data source given; {ACCEPTED_SOURCES}")
        self.image_size = size_pair(image_size)
        lo, hi = _SCALE.check(scale)
        if lo > hi:
            raise option_error("", "scale", f"{_SCALE.describe()} (lo, hi) with lo <= hi", scale)
        self.train, self.seed, self.scale, self.epoch = train, seed, (lo, hi), 0
        index = Index()
        self.skipped = sum(index_source(source, index) for source in self.sources)
        self._files, self._members = Strings(index.files), Strings(index.member)
        self._file = np.asarray(index.file, dtype=np.int32)
        self._offset = np.asarray(index.offset, dtype=np.int64)
        self._size = np.asarray(index.size, dtype=np.int64)
        # Per item, 0 or why it failed to decode (a DECODE_FAILURES code), in shared memory: forked data-loader
        # workers write it and see each other's findings; the parent reads the total (decode_failures).
        failures = torch.zeros(len(self._file), dtype=torch.uint8)
        self._failures: Tensor = failures.share_memory_()  # type: ignore[no-untyped-call]  # torch leaves it untyped
        self._cache: dict[int, Tensor] = {}  # decoded items of a small data set (see _decoded)
        self._handles: OrderedDict[int, BinaryIO] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._file)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentation :meth:`__getitem__` draws (no effect when ``train`` is False)."""
        self.epoch = int(epoch)

    def name(self, index: int) -> str:
        """A readable identifier of item ``index``: its file path, or ``shard.tar:member``."""
        file, member = self._files[int(self._file[index])], self._members[index]
        return f"{file}:{member}" if member else file

    def describe(self) -> str:
        """One line: how many images from how many sources (and how many were skipped)."""
        n = len(self.sources)
        skipped = f" ({self.skipped:,} unreadable skipped)" if self.skipped else ""
        return f"{len(self):,} images from {n} source{'s' * (n != 1)}{skipped}"

    def decode_failures(self) -> dict[str, list[str]]:
        """The images that failed to decode so far, in this process or any forked data-loader worker, and why.

        Returns:
            ``{reason: [name, ...]}``, reasons from :data:`DECODE_FAILURES` (the most frequent first), names as
            :meth:`name` gives them, in data set order; empty when every image read so far decoded.
        """
        codes = self._failures.numpy()
        failed: dict[str, list[str]] = {}
        for item in np.flatnonzero(codes).tolist():
            failed.setdefault(DECODE_FAILURES[int(codes[item]) - 1], []).append(self.name(item))
        return dict(sorted(failed.items(), key=lambda pair: (-len(pair[1]), DECODE_FAILURES.index(pair[0]))))

    def __getitem__(self, index: int) -> Tensor:
        """Item ``index`` as ``(3, H, W)`` float32 RGB in [0, 1], ``(H, W)`` = ``image_size``.

        An item that cannot be decoded is replaced by the next decodable one, with the same augmentation, and
        recorded (:meth:`decode_failures`).
        """
        crop = self._crop(index)
        return crop if isinstance(crop, Tensor) else eight_bit_to_float(crop[None])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Tensor]:
        """Items ``indices``, exactly as :meth:`__getitem__` gives them, decoded together (the data loader calls
        this for a batch): small JPEGs that need no resize (64x64 photos for 64x64 crops) are cropped as 8-bit
        pixels and converted to float in one operation for the whole batch, 15% less time per batch than item by
        item (``bench/loading.py``)."""
        crops = [self._crop(index) for index in indices]
        eight_bit = [k for k, crop in enumerate(crops) if not isinstance(crop, Tensor)]
        if eight_bit:
            for k, image in zip(eight_bit, eight_bit_to_float(np.stack([crops[k] for k in eight_bit]))):
                crops[k] = image
        return crops  # type: ignore[return-value]

    def _crop(self, index: int) -> Tensor | np.ndarray:
        """Item ``index`` cropped: 8-bit ``(H, W, 3)`` RGB when it is a small JPEG that needs no resize (the
        caller converts it), else ``(3, H, W)`` float RGB. Each item is read and decoded once."""
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        draws, scale = self._draws(index)
        for step in range(len(self)):
            item = (index + step) % len(self)
            if self._failures[item]:
                continue
            try:
                if len(self) <= _DECODED_CACHE_LIMIT:
                    pixels = self._decoded(item)
                else:
                    data = self._read(item)
                    bgr = small_jpeg_bgr(data)
                    if bgr is not None and covering_size(bgr.shape[:2], self.image_size, scale) == bgr.shape[:2]:
                        top, left, flip = crop_box(bgr.shape[:2], self.image_size, draws)
                        crop = bgr[top:top + self.image_size[0], left:left + self.image_size[1], ::-1]  # to RGB
                        return crop[:, ::-1] if flip else crop
                    if bgr is not None:
                        pixels = eight_bit_to_float(bgr[None, ..., ::-1])[0]
                    else:
                        with open_image(io.BytesIO(data)) as image:
                            pixels = decode_covering(image, self.image_size, scale)
                covering = covering_size((pixels.shape[1], pixels.shape[2]), self.image_size, scale)
                pixels = resize_pixels(pixels, covering)
            except DECODE_ERRORS as error:
                self._failures[item] = _failure_code(error)
                warnings.warn(f"skipping unreadable image {self.name(item)}: {reason(error)} (using the next "
                              "image instead)", DecodeWarning, stacklevel=3)
                continue
            return crop_pixels(pixels, self.image_size, draws)
        raise DataError(f"none of the {len(self):,} images in {self.sources} could be decoded")

    def original(self, index: int) -> Tensor:
        """Item ``index`` at its own size, neither resized nor cropped: ``(3, H, W)`` float32 RGB in [0, 1].

        Raises:
            DataError: it cannot be decoded (the message names it).
        """
        try:
            with open_image(io.BytesIO(self._read(int(index)))) as image:
                return rgb_pixels(ImageOps.exif_transpose(image))
        except DECODE_ERRORS as error:
            raise DataError(f"cannot read image {self.name(int(index))}: {reason(error)}") from None

    def _draws(self, index: int) -> tuple[list[float] | None, float]:
        """The augmentation draws of ``index`` this epoch, uniform (scale, top, left, flip), and the scale they give
        (None and 1 for evaluation)."""
        if not self.train:
            return None, 1.0
        # All random numbers are drawn before decoding, so a replaced item cannot shift the stream.
        draws = torch.rand(4, generator=keyed_generator(self.seed, self.epoch, index)).tolist()
        return draws, self.scale[0] + (self.scale[1] - self.scale[0]) * draws[0]

    def _decoded(self, item: int) -> Tensor:
        """Pixels of ``item`` at the largest size any crop needs, decoded once per process (small data sets only:
        a handful of large photos would otherwise be decoded and shrunk again for every crop)."""
        if item not in self._cache:
            with open_image(io.BytesIO(self._read(item))) as image:
                pixels = rgb_pixels(ImageOps.exif_transpose(image))
            largest = covering_size((pixels.shape[1], pixels.shape[2]), self.image_size, self.scale[1])
            self._cache[item] = resize_pixels(pixels, largest) if largest[0] < pixels.shape[1] else pixels
        return self._cache[item]

    def _read(self, item: int) -> bytes:
        file, size = int(self._file[item]), int(self._size[item])
        if size < 0:
            return Path(self._files[file]).read_bytes()
        handle = self._shard(file)
        handle.seek(int(self._offset[item]))
        data = handle.read(size)
        if len(data) != size:
            raise OSError(f"tar member truncated ({len(data)} of {size} bytes)")
        return data

    def _shard(self, file: int) -> BinaryIO:
        if self._pid != os.getpid():  # a forked worker must not share (and move) its parent's file positions
            self._handles, self._pid = OrderedDict(), os.getpid()
        # kept open across calls on purpose (up to _MAX_OPEN_SHARDS), so no context manager
        handle = self._handles.pop(file, None) or open(self._files[file], "rb")  # noqa: SIM115
        self._handles[file] = handle  # most recently used last
        if len(self._handles) > _MAX_OPEN_SHARDS:
            self._handles.popitem(last=False)[1].close()
        return handle

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()  # open files do not pickle (spawned workers): each process opens its own
        state["_handles"], state["_pid"] = OrderedDict(), None
        return state


def load_image(path: str | os.PathLike[str]) -> Tensor:
    """Read one image at full resolution.

    Args:
        path: an image file (any format and mode Pillow reads).

    Returns:
        ``(3, H, W)`` float32 RGB in [0, 1].

    Raises:
        DataError: the file is missing or not a readable image (the message names it).
    """
    try:
        with open_image(os.fspath(path)) as image:
            return rgb_pixels(ImageOps.exif_transpose(image))
    except DECODE_ERRORS as error:
        raise DataError(f"cannot read image '{path}': {reason(error)}") from None


def load_images(paths: Sequence[str | os.PathLike[str]], image_size: int | tuple[int, int]) -> Tensor:
    """Read images with the evaluation transform (shorter side resized, centre crop).

    Args:
        paths: image files.
        image_size: crop size, ``S`` or ``(height, width)``.

    Returns:
        ``(B, 3, H, W)`` float32 RGB in [0, 1].

    Raises:
        DataError: no paths, or a file that is missing or unreadable (the message names it).
    """
    crop = size_pair(image_size)
    if not paths:
        raise DataError("no image files given")
    batch = []
    for path in paths:
        try:
            with open_image(os.fspath(path)) as image:
                batch.append(crop_pixels(decode_covering(image, crop), crop, None))
        except DECODE_ERRORS as error:
            raise DataError(f"cannot read image '{path}': {reason(error)}") from None
    return torch.stack(batch)


def evaluation_loader(data: str | Sequence[str] | Dataset[Tensor], image_size: int | tuple[int, int], *,
                      limit: int | None = None, batch_size: int = 64, workers: int = 0,
                      pin_memory: bool = False) -> DataLoader[Tensor]:
    """Batches of test images in order: resized, centre-cropped, the first ``limit`` of them.

    Every test-set score in repinv is a normalized error, whose normalizer compares pairs of images, so at least two
    are needed.

    Args:
        data: sources (folders, tar globs, ``builtin:test``), or a dataset built before (a trainer that validates
            often keeps one, instead of indexing the sources again each time).
        image_size: crop size, ``S`` or ``(height, width)``.
        limit: at most this many images (the first ones).
        batch_size: images per batch.
        workers: data-loader worker processes.
        pin_memory: page-locked batches, for copies to a GPU.

    Returns:
        The loader; ``len(loader.dataset)`` is the number of test images.

    Raises:
        InvalidOption: ``limit`` below 2.
        DataError: fewer than 2 readable images.
    """
    # at least 2: the normalized error compares pairs of images
    limit = Option("limit", None, int, "test images at most", minimum=2, optional=True).check(limit, "evaluation")
    dataset = data if isinstance(data, Dataset) else ImageDataset(data, image_size, train=False)
    size = len(cast(Sized, dataset))  # every data set repinv builds has a length
    if limit is not None and limit < size:
        dataset, size = Subset(dataset, range(limit)), limit
    if size < 2:
        raise DataError(f"at least 2 test images are needed (the normalized error compares pairs), got {size}")
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=pin_memory)


def find_image_dataset(data: object) -> ImageDataset | None:
    """The :class:`ImageDataset` under ``data``: itself, or reached through ``.dataset`` (a data loader, a
    ``Subset``) or ``.images`` (repinv's training samples and feature-cache writers), at any depth; None when there
    is none (a feature cache, a tensor data set)."""
    for _ in range(16):  # wrappers are a few levels deep; the bound guards against a cycle
        if isinstance(data, ImageDataset):
            return data
        inner = getattr(data, "dataset", None)
        data = getattr(data, "images", None) if inner is None else inner
        if data is None:
            return None
    return None


def skip_summary(data: object, during: str) -> str | None:
    """One line about the images that failed to decode and were replaced, grouped by reason.

    Args:
        data: an :class:`ImageDataset`, or anything :func:`find_image_dataset` reaches one through (a data loader,
            a ``Subset``).
        during: what was running, for the message ("training", "evaluation", "feature caching").

    Returns:
        For example ``"skipped 3 images that failed to decode during evaluation: 2 truncated or corrupt (first:
        a.jpg), 1 not an image (b.jpg)"`` (names as :meth:`ImageDataset.name` gives them); None when none failed,
        or ``data`` holds no :class:`ImageDataset`. The record counts every failure of the data set so far, in this
        process and its forked workers.
    """
    images = find_image_dataset(data)
    failed = images.decode_failures() if images is not None else {}
    total = sum(len(names) for names in failed.values())
    if not total:
        return None
    parts = [f"{len(names):,} {reason} ({'first: ' if len(names) > 1 else ''}{names[0]})"
             for reason, names in failed.items()]
    return f"skipped {total:,} image{'s' * (total != 1)} that failed to decode during {during}: {', '.join(parts)}"


def default_data_root() -> Path:
    """The shared data folder used by slow tests and benchmarks.

    Returns:
        ``$REPINV_SHARED_DATA`` when set, else ``<repo root>/../shared/data`` (it may not exist).
    """
    configured = os.environ.get("REPINV_SHARED_DATA")
    return Path(configured).expanduser() if configured else Path(__file__).resolve().parents[3] / "shared" / "data"
