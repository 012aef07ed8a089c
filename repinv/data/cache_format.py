"""A feature cache's files and reading them back: ``cache.json`` (the manifest), the shards, the checks that tie them
together, and :class:`FeatureCache`, which training reads.

Reading checks ``cache.json`` and every shard against each other: a damaged shard or a hand-edited manifest is an
error that names it, never wrong features. Making a cache is :mod:`repinv.data.cache`'s.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from repinv.errors import CacheError, CheckpointError, RepinvError, UnknownRepresentation
from repinv.files import load_tensors, read_metadata
from repinv.registry.factories import create_representation
from repinv.representations.base import FeatureSpec

__all__ = ["MANIFEST", "FORMAT", "FEATURE_DTYPES", "FeatureCache", "read_manifest", "shard_path"]


MANIFEST = "cache.json"


FORMAT = 1  # bumped when the shard layout changes


#: The sizes ``cache_features`` takes (the other arguments are checked by the representation and the data).
#: How a cache may store feature values: float32 exactly; float16 or bfloat16 in half the memory and disk (a 24x56x56
#: map, 300 KB per image in float32).
FEATURE_DTYPES = ("float32", "float16", "bfloat16")


def shard_path(root: Path, shard: int) -> Path:
    return root / f"shard-{shard:05d}.safetensors"


def _damaged_shard(path: Path, problem: str) -> CacheError:
    return CacheError(f"cache shard {path} is damaged ({problem}): delete it and run `repinv features` again, which "
                      "recomputes only the missing shards")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """What the cache at ``path`` holds (its ``cache.json``), without reading the shards.

    Raises:
        CacheError: ``path`` is not a cache, one in another format, or its ``cache.json`` is damaged (not JSON, or
            fields missing or of the wrong kind).
    """
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.exists():
        raise CacheError(f"{path} is not a feature cache (no {MANIFEST}); make one with `repinv features`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (ValueError, OSError) as error:  # UnicodeDecodeError is a ValueError
        raise _damaged_manifest(manifest_path, f"not readable JSON: {error}") from None
    if not isinstance(manifest, dict):
        raise _damaged_manifest(manifest_path, f"a JSON {type(manifest).__name__}, not an object")
    if manifest.get("format") != FORMAT:
        raise CacheError(f"{path} has cache format {manifest.get('format')}, this repinv reads {FORMAT}; make it "
                         "again with `repinv features`")
    problem = _manifest_problem(manifest)
    if problem:
        raise _damaged_manifest(manifest_path, problem)
    return manifest


def _damaged_manifest(path: Path, problem: str) -> CacheError:
    return CacheError(f"{path} is damaged or was edited by hand ({problem}): put back the original, or delete "
                      f"{path.parent} and make the cache again with `repinv features`")


def _positive_ints(value: Any, lengths: tuple[int, ...]) -> bool:
    return isinstance(value, list) and len(value) in lengths and \
        all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)


def _manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with the fields of a ``cache.json``, or ``None``."""
    rep = manifest.get("representation")
    if not (isinstance(rep, dict) and isinstance(rep.get("name"), str) and isinstance(rep.get("options"), dict)):
        return "representation must be {name, options}"
    if not _positive_ints(manifest.get("image_size"), (2,)):
        return f"image_size must be two positive integers, not {manifest.get('image_size')!r}"
    if not _positive_ints(manifest.get("feature_shape"), (1, 3)):
        return f"feature_shape must be one or three positive integers, not {manifest.get('feature_shape')!r}"
    sources = manifest.get("sources")
    if not (isinstance(sources, list) and all(isinstance(source, str) for source in sources)):
        return "sources must be a list of names"
    for key in ("count", "shard_size"):
        if not _positive_ints([manifest.get(key)], (1,)):
            return f"{key} must be a positive integer, not {manifest.get(key)!r}"
    if manifest.get("feature_dtype", "float32") not in FEATURE_DTYPES:
        return f"feature_dtype must be one of {', '.join(FEATURE_DTYPES)}, not {manifest.get('feature_dtype')!r}"
    return None


def _shard_differs(path: Path, what: str) -> CacheError:
    return CacheError(f"cache shard {path} does not match {path.parent / MANIFEST} ({what}): the manifest was edited "
                      f"by hand or the shard comes from another cache; put back the original {MANIFEST}, or delete "
                      f"{path.parent} and make the cache again with `repinv features`")


def _check_range(path: Path, start: int, stop: int) -> None:
    """Refuse a shard whose header does not record images ``start .. stop - 1`` (reads the header only).

    Raises:
        CacheError: the header is unreadable (a damaged shard) or records other images.
    """
    try:
        recorded = read_metadata(path)
    except CheckpointError:
        raise _damaged_shard(path, "cut short, or not a safetensors file") from None
    first, stop_at = recorded.get("start"), recorded.get("stop")
    if (first, stop_at) != (start, stop):
        held = f"images {first} to {stop_at - 1}" if isinstance(first, int) and isinstance(stop_at, int) else \
            f"no image range ({recorded})"
        raise _shard_differs(path, f"it holds {held}, the manifest puts images {start} to {stop - 1} there")


def _check_shard(path: Path, shard: dict[str, Tensor], start: int, stop: int, manifest: dict[str, Any]) -> None:
    """Refuse a shard whose tensors do not hold images ``start .. stop - 1`` as ``cache.json`` describes them.

    Raises:
        CacheError: naming the shard and what differs.
    """
    differs = functools.partial(_shard_differs, path)
    count = stop - start
    height, width = manifest["image_size"]
    images = shard.get("images")
    if images is None or tuple(images.shape) != (count, 3, height, width):
        found = "no images" if images is None else f"images {tuple(images.shape)}"
        raise differs(f"{found}, the manifest says {count} images of 3x{height}x{width}")
    if images.dtype not in (torch.uint8, torch.float32):
        raise _damaged_shard(path, f"images of type {images.dtype}")
    shape = tuple(manifest["feature_shape"])
    if len(shape) == 1:
        features = shard.get("features")
        if features is None or tuple(features.shape) != (count, *shape):
            found = "feature maps" if features is None else f"features {tuple(features.shape)}"
            raise differs(f"{found}, the manifest says {count} feature vectors of {shape[0]}")
        return
    channels, rows, columns = shape
    if not all(k in shard for k in ("cell_values", "cell_index", "cell_counts")):
        raise differs(f"feature vectors, the manifest says feature maps of {channels}x{rows}x{columns}")
    values, index, counts = shard["cell_values"], shard["cell_index"], shard["cell_counts"]
    if values.dim() != 2 or values.shape[1] != channels:
        raise differs(f"cells of {tuple(values.shape[1:])} values, the manifest says {channels} channels")
    if tuple(counts.shape) != (count,) or tuple(index.shape) != (values.shape[0],) or \
            int(counts.sum()) != values.shape[0] or (count and int(counts.min()) < 0):
        raise _damaged_shard(path, "its cell counts do not add up")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= rows * columns):
        raise differs(f"cell indices up to {int(index.max())}, the manifest says {rows}x{columns} cells")


class FeatureCache(Dataset[tuple[Tensor, Tensor]]):
    """A finished feature cache, read into memory: item ``i`` is ``(image, features)`` of the ``i``-th crop.

    Args:
        path: the cache directory.

    Raises:
        CacheError: not a cache, an unfinished one, one from an incompatible repinv, a damaged shard, or a
            ``cache.json`` that does not match its shards or its representation (edited by hand); one line that
            names the file and what to do.

    Shape:
        - image: ``(3, H, W)`` float32 in [0, 1]
        - features: the representation's ``(C, h, w)`` or ``(D,)``
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        count, shard_size = int(self.manifest["count"]), int(self.manifest["shard_size"])
        ranges = [(s * shard_size, min(count, (s + 1) * shard_size)) for s in range(math.ceil(count / shard_size))]
        paths = [shard_path(self.path, s) for s in range(len(ranges))]
        for path, (start, stop) in zip(paths, ranges):  # first: a count or shard size edited by hand shows here
            if path.exists():
                _check_range(path, start, stop)
        extra = sorted(path.name for path in self.path.glob("shard-*.safetensors") if path not in paths)
        if extra:
            raise CacheError(f"{self.path} holds shards its {MANIFEST} does not count ({', '.join(extra[:3])}"
                             f"{' …' if len(extra) > 3 else ''}): the manifest was edited by hand; put back the "
                             f"original, or delete {self.path} and make the cache again with `repinv features`")
        missing = [path.name for path in paths if not path.exists()]
        if missing:
            raise CacheError(f"{self.path} is unfinished ({len(missing)} shards missing, first {missing[0]}); run "
                             "the same `repinv features` command again to finish it")
        self.spec = FeatureSpec(tuple(self.manifest["feature_shape"]))
        self._shards = []
        for path, (start, stop) in zip(paths, ranges):
            try:
                shard = load_tensors(path)
            except CheckpointError:
                raise _damaged_shard(path, "cut short, or not a safetensors file") from None
            _check_shard(path, shard, start, stop, self.manifest)
            self._shards.append(shard)
        self._check_spec()  # last: shards that do not fit the manifest are named first
        for shard in self._shards:
            if "cell_counts" in shard:  # row offsets of each image's cells, for random access
                shard["cell_start"] = torch.cumsum(shard["cell_counts"], 0) - shard["cell_counts"]

    def _check_spec(self) -> None:
        """Refuse a manifest whose feature shape is not what its representation gives at its image size (an edited
        ``cache.json`` whose shards still fit it, e.g. the same number of cells in another grid).

        A representation no plugin registers here (one given as an instance) is not checked.
        """
        rep = self.manifest["representation"]
        try:
            shape = create_representation(rep["name"], **rep["options"]).spec(self.image_size).shape
        except UnknownRepresentation:
            return
        except RepinvError as error:
            raise _damaged_manifest(self.path / MANIFEST, f"its representation and image size do not fit: {error}") \
                from None
        if tuple(shape) != self.spec.shape:
            height, width = self.image_size
            raise _damaged_manifest(self.path / MANIFEST, f"feature_shape {list(self.spec.shape)}, but {rep['name']} "
                                    f"{rep['options']} gives {list(shape)} at {height}x{width}")

    @property
    def rep(self) -> str:
        """The representation's name."""
        return str(self.manifest["representation"]["name"])

    @property
    def rep_options(self) -> dict[str, Any]:
        """The options the representation was created with."""
        return dict(self.manifest["representation"]["options"])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the stored crops."""
        height, width = self.manifest["image_size"]
        return int(height), int(width)

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def describe(self) -> str:
        """One line: how many images, of which representation, from where."""
        return f"{len(self):,} cached {self.rep} features of {', '.join(self.manifest['sources'])}"

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} cached images")
        shard = self._shards[index // int(self.manifest["shard_size"])]
        i = index % int(self.manifest["shard_size"])
        image = shard["images"][i]
        image = image.float().div_(255.0) if image.dtype == torch.uint8 else image.clone()
        if "features" in shard:
            return image, shard["features"][i].to(torch.float32, copy=True)
        channels, height, width = self.spec.shape
        start = int(shard["cell_start"][i])
        rows = slice(start, start + int(shard["cell_counts"][i]))
        cells = torch.zeros(height * width, channels)
        cells[shard["cell_index"][rows].long()] = shard["cell_values"][rows].float()
        return image, cells.t().reshape(channels, height, width)

    def images(self, count: int) -> Tensor:
        """The first ``count`` crops, ``(count, 3, H, W)`` (fewer when the cache is smaller)."""
        return torch.stack([self[i][0] for i in range(min(count, len(self)))])
