"""Finding the images a data source names: folders, single files, tar shards, globs, and the bundled photos.

The index is compact numpy arrays (file number, byte offset and size per image) and two string tables (file paths,
member names): no Python object per image, so forked data-loader workers do not copy it page by page through
reference counts. A file whose header cannot be read is dropped here and counted in one :class:`DataWarning` per
source; tar members are checked by extension only (a header check would read the whole shard). The same file is
indexed once per source, through symlinks and loops; tar member names are only names: nothing is ever extracted.
"""

from __future__ import annotations

import glob
import importlib.resources
import os
import stat
import struct
import tarfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from repinv.data.pixels import open_image
from repinv.errors import DataError

__all__ = ["DataWarning", "IMAGE_EXTENSIONS", "BUILTIN_TRAIN", "BUILTIN_TEST", "ACCEPTED_SOURCES", "DECODE_ERRORS",
           "Index", "Strings", "absolute_source", "builtin_files", "index_source", "reason"]


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


#: Files in scikit-image's data folder (see the module docstring for the split).
BUILTIN_TRAIN = ("astronaut.png", "motorcycle_left.png", "motorcycle_right.png", "hubble_deep_field.jpg",
                 "rocket.jpg")


BUILTIN_TEST = ("chelsea.png", "coffee.png")


_BUILTIN = {"builtin": BUILTIN_TRAIN, "builtin:test": BUILTIN_TEST, "builtin:all": BUILTIN_TRAIN + BUILTIN_TEST}


ACCEPTED_SOURCES = ("a source is a folder of images (JPEG, PNG, BMP, WebP, TIFF), an image file, an uncompressed .tar "
             "shard or a quoted glob of them ('shards/train-*.tar'), or builtin / builtin:test / builtin:all")


class DataWarning(UserWarning):
    """Images were skipped because they could not be read."""


class Strings:
    """An immutable list of strings stored in two numpy arrays (UTF-8 bytes and end offsets).

    A Python list of a million ``str`` objects is copied into every forked worker bit by bit, because reading an
    object writes its reference count; two arrays have no per-string objects.
    """

    def __init__(self, strings: Iterable[str]) -> None:
        encoded = [s.encode("utf-8", "surrogateescape") for s in strings]
        self._ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
        self._bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> str:
        start = int(self._ends[i - 1]) if i else 0
        return self._bytes[start:int(self._ends[i])].tobytes().decode("utf-8", "surrogateescape")


class Index:
    """Where each image's bytes are, collected in lists while indexing, then frozen into arrays."""

    def __init__(self) -> None:
        self.files: list[str] = []  # image files and tar shards
        self.file: list[int] = []  # per image: position in ``files``
        self.offset: list[int] = []
        self.size: list[int] = []  # -1: the whole file
        self.member: list[str] = []  # tar member name; "" for an image file

    def add(self, file: int, offset: int = 0, size: int = -1, member: str = "") -> None:
        self.file.append(file)
        self.offset.append(offset)
        self.size.append(size)
        self.member.append(member)

    def add_file(self, path: str) -> int:
        self.files.append(path)
        return len(self.files) - 1


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def reason(error: BaseException) -> str:
    if isinstance(error, UnidentifiedImageError):  # its message repeats the path, which the caller already shows
        return "cannot identify image file"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _expand(source: str) -> list[Path]:
    """The existing paths a source names: itself, or the sorted matches of a glob."""
    path = Path(source).expanduser()
    if path.exists():  # checked first so that a folder named "photos [2019]" is not read as a glob
        return [path]
    if any(c in source for c in "*?["):
        matches = glob.glob(str(path), recursive=True)
        if not matches:
            raise DataError(f"data source {source!r} matches no files; {ACCEPTED_SOURCES}")
        return [Path(m) for m in sorted(_one_path_per_file(matches))]
    raise DataError(f"data source {source!r} does not exist; {ACCEPTED_SOURCES}")


def _one_path_per_file(matches: list[str]) -> list[str]:
    """Glob matches without the copies a symlinked folder adds: ``**`` follows one, round and round a loop (a link
    to a parent) until the kernel refuses the path. Of the names of one file, the shortest is kept; folders are
    resolved once each."""
    real_folders: dict[str, str] = {}
    kept: dict[tuple[str, str], str] = {}
    for match in matches:
        folder, name = os.path.split(match)
        if folder not in real_folders:
            real_folders[folder] = os.path.realpath(folder)  # resolves loops without the kernel's limit
        key = (real_folders[folder], name)
        if key not in kept or (match.count(os.sep), match) < (kept[key].count(os.sep), kept[key]):
            kept[key] = match
    return list(kept.values())


def _walk(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # in place: os.walk descends in this order
        found.extend(Path(root, f) for f in sorted(files) if not f.startswith(".") and _is_image(f))
    return found


def _index_tar(path: Path, index: Index, bad: list[str]) -> None:
    try:
        size = path.stat().st_size
        archive = tarfile.open(path, "r:")  # noqa: SIM115 (closed by the with below, outside this try)
    except (tarfile.TarError, OSError) as error:
        raise DataError(f"cannot read tar shard '{path}': {reason(error)} (shards must be uncompressed .tar)") \
            from None
    with archive:
        file, members, cut = index.add_file(str(path)), iter(archive), False
        while True:
            try:
                member = next(members, None)
            except (tarfile.TarError, OSError) as error:  # the shard ends inside a member (an interrupted copy)
                if not cut:
                    bad.append(f"{path}: {reason(error)} (the shard is cut short)")
                break
            if member is None:
                break
            if not (member.isreg() and _is_image(member.name)):
                continue
            if member.size == 0:
                bad.append(f"{path}:{member.name}: empty file")
            elif member.offset_data + member.size > size:
                cut = True
                bad.append(f"{path}:{member.name}: the shard is cut short inside it "
                           f"({max(0, size - member.offset_data):,} of {member.size:,} bytes)")
            else:
                index.add(file, member.offset_data, member.size, member.name)


def _first_time(status: os.stat_result, seen: set[tuple[int, int]]) -> bool:
    """Whether the file of ``status`` was not seen before; it is now."""
    identity = (status.st_dev, status.st_ino)
    if identity in seen:
        return False
    seen.add(identity)
    return True


def builtin_files(source: str) -> list[Path] | None:
    """The photo files a builtin source names (``builtin``, ``builtin:test``, ``builtin:all``), or ``None`` for any
    other source."""
    if source not in _BUILTIN:
        return None
    return [Path(str(importlib.resources.files("skimage.data")), name) for name in _BUILTIN[source]]


def absolute_source(source: str) -> str:
    """A source as it names the same images from any working directory: a path or glob made absolute, a builtin
    name unchanged."""
    if source in _BUILTIN or source.startswith("builtin:"):
        return source
    return os.path.abspath(os.path.expanduser(source))


def index_source(source: str, index: Index) -> int:
    """Add the images of one source to ``index``; warn about unreadable ones and return how many there were."""
    builtin = builtin_files(source)
    if builtin is not None:
        paths = builtin
    elif source.startswith("builtin:"):
        raise DataError(f"unknown builtin split {source!r}; use builtin, builtin:test or builtin:all")
    else:
        paths = _expand(source)
    before, bad, seen = len(index.file), list[str](), set[tuple[int, int]]()
    for path in paths:
        if path.suffix.lower() == ".tar" and path.is_file():
            if _first_time(path.stat(), seen):
                _index_tar(path, index, bad)
            continue
        # A glob may also match other files (README.txt, labels.csv): only image extensions count.
        files = _walk(path) if path.is_dir() else [path] if _is_image(path.name) else []
        for file in files:
            try:
                status = file.stat()  # symlinks followed: a dangling one fails here
                if not stat.S_ISREG(status.st_mode):  # a FIFO would block the open below
                    bad.append(f"{file}: not a regular file")
                    continue
                if not _first_time(status, seen):
                    continue
                open_image(str(file)).close()  # parses the header only; decoding waits for __getitem__
            except DECODE_ERRORS as error:
                bad.append(f"{file}: {reason(error)}")
                continue
            index.add(index.add_file(str(file)))
    found = len(index.file) - before
    if not found:
        unreadable = f" ({len(bad)} unreadable; first: {bad[0]})" if bad else ""
        raise DataError(f"no readable images in {source!r}{unreadable}; {ACCEPTED_SOURCES}")
    if bad:
        warnings.warn(f"skipped {len(bad):,} unreadable image{'s' * (len(bad) > 1)} of {found + len(bad):,} in "
                      f"{source!r} (first: {bad[0]})", DataWarning, stacklevel=3)
    return len(bad)


#: What Pillow raises on corrupt, truncated or foreign data (OSError also covers a file deleted since indexing).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, Image.DecompressionBombError)
