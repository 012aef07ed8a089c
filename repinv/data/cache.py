"""Feature caches: a representation's features of a data set, computed once, then read back by training.

Expensive representations (sparse SIFT costs about a millisecond per 64x64 image on one core) need not be
recomputed every epoch: ``repinv features --rep sift --data D --out CACHE`` stores each image's fixed centre
crop with its features, and ``repinv train --features CACHE`` trains from them. A cache has no random
augmentation, so training from it equals training on the fly with ``augment = false`` (tested).

A cache is a directory::

    cache.json                 what it holds: representation and options, image size, feature shape, sources,
                               image count, images per shard, repinv version
    shard-00000.safetensors    images and features of images 0 .. shard_size - 1
    shard-00001.safetensors    ...

Shards are written atomically, one at a time, so an interrupted ``repinv features`` continues where it stopped
when run again with the same arguments. Storage is lossless and compact: images as 8-bit when every pixel is a
multiple of 1/255 (crops that needed no resizing), float32 otherwise; feature maps keep only their cells that are
not all zero (most of a sparse SIFT map is empty), vectors are stored whole.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from repinv.data.features import feature_mode, per_image_features, with_features
from repinv.data.sources import ImageDataset
from repinv.errors import CacheError
from repinv.files import load_tensors, save_tensors, write_json
from repinv.options import Option, validate_options
from repinv.progress import progress_bar
from repinv.registry.factories import create_representation
from repinv.representations.base import FeatureSpec, Representation
from repinv.utils import VERSION, resolve_device

__all__ = ["cache_features", "FeatureCache", "read_manifest", "MANIFEST"]

MANIFEST = "cache.json"
FORMAT = 1  # bumped when the shard layout changes
#: The sizes ``cache_features`` takes (the other arguments are checked by the representation and the data).
CACHE_OPTIONS = (Option("shard_size", 1024, int, "images per shard file", minimum=1),
                 Option("batch_size", 64, int, "images per batch of feature computation", minimum=1))


def _shard_path(root: Path, shard: int) -> Path:
    return root / f"shard-{shard:05d}.safetensors"


class _Crops(Dataset[Tensor | tuple[Tensor, Tensor]]):
    """Centre crops of ``images`` for items ``start .. stop - 1``, with their features when computed per image."""

    def __init__(self, images: ImageDataset, start: int, stop: int, representation: Representation | None) -> None:
        self.images, self.start, self.stop, self.representation = images, start, stop, representation

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> Tensor | tuple[Tensor, Tensor]:
        image = self.images[self.start + i]
        return image if self.representation is None else (image, per_image_features(self.representation, image))


def _encode(images: Tensor, features: Tensor) -> dict[str, Tensor]:
    """Lossless compact tensors of one shard (see the module docstring)."""
    levels = (images * 255).round()
    exact = torch.equal(levels / 255, images)
    tensors = {"images": levels.to(torch.uint8) if exact else images.float().contiguous()}
    if features.dim() == 2:
        tensors["features"] = features.float().contiguous()
        return tensors
    cells = features.flatten(2).transpose(1, 2)  # (B, h*w, C)
    occupied = cells.ne(0).any(-1)  # (B, h*w)
    tensors["cell_values"] = cells[occupied].float().contiguous()  # (N, C)
    tensors["cell_index"] = occupied.nonzero()[:, 1].to(torch.int32)  # (N,) flat cell of each row
    tensors["cell_counts"] = occupied.sum(1).to(torch.int64)  # (B,) rows per image
    return tensors


def cache_features(rep: str | Representation, data: str | Sequence[str], out: str | Path, *,
                   rep_options: dict[str, Any] | None = None, image_size: int = 64, shard_size: int = 1024,
                   batch_size: int = 64, workers: int = 2, device: str = "auto",
                   show_progress: bool = True) -> FeatureCache:
    """Compute and store the features of every image of ``data`` (centre crops), resuming a partial cache.

    Args:
        rep: a representation name (``sift``, ``alexnet:conv5``) or instance.
        data: image sources, as for :class:`repinv.ImageDataset`.
        out: the cache directory (created; an interrupted cache made with the same arguments is continued).
        rep_options: options for the representation's factory (with a name).
        image_size: side of the centre crops.
        shard_size: images per shard file.
        batch_size: images per batch of feature computation.
        workers: data-loader worker processes (per-image representations run in them).
        device: where batched representations run.
        show_progress: show a progress bar over the images.

    Returns:
        The finished cache.

    Raises:
        CacheError: ``out`` holds a cache made with other arguments.
        InvalidOption, DataError, UnknownRepresentation: bad arguments or data.
    """
    shard_size, batch_size = validate_options("feature cache", {"shard_size": shard_size, "batch_size": batch_size},
                                              CACHE_OPTIONS).values()
    dev = resolve_device(device)
    representation = rep if isinstance(rep, Representation) else create_representation(rep, **(rep_options or {}))
    representation = representation.to(dev).eval()
    images = ImageDataset(data, image_size, train=False)
    size = images.image_size
    manifest = {"format": FORMAT, "representation": {"name": representation.name,
                                                     "options": representation.config()},
                "image_size": list(size), "feature_shape": list(representation.spec(size).shape),
                "sources": images.sources, "count": len(images), "shard_size": shard_size}
    root = Path(out)
    existing = root / MANIFEST
    if existing.exists():
        previous = {k: v for k, v in json.loads(existing.read_text()).items() if k != "repinv_version"}
        changed = [key for key in manifest if previous.get(key) != manifest[key]]
        if changed:
            raise CacheError(f"{root} holds a feature cache made with other {', '.join(changed)}; remove it or "
                             "choose another --out")
    else:
        write_json(existing, {**manifest, "repinv_version": VERSION})
    try:
        _write_shards(representation, images, root, shard_size, batch_size, workers, dev, show_progress)
    except KeyboardInterrupt:
        raise CacheError(f"interrupted; the finished shards are kept in {root}: run the same command again to "
                         "continue") from None
    return FeatureCache(root)


def _write_shards(representation: Representation, images: ImageDataset, root: Path, shard_size: int,
                  batch_size: int, workers: int, dev: torch.device, show_progress: bool) -> None:
    """Compute and write every shard not written yet."""
    shards = math.ceil(len(images) / shard_size)
    mode = feature_mode(representation)
    per_image = representation if mode == "workers" else None
    with progress_bar(f"features {representation.name}", total=len(images), enabled=show_progress) as advance:
        for shard in range(shards):
            start, stop = shard * shard_size, min(len(images), (shard + 1) * shard_size)
            path = _shard_path(root, shard)
            if path.exists():
                advance(stop - start)
                continue
            loader = DataLoader(_Crops(images, start, stop, per_image), batch_size=batch_size, num_workers=workers)
            crops, features = [], []
            for crop, computed in with_features(loader, representation, mode, dev):
                assert computed is not None  # only training's "step" mode leaves features to later
                crops.append(crop.cpu())
                features.append(computed.cpu())
                advance(len(crop))
            save_tensors(path, _encode(torch.cat(crops), torch.cat(features)), {"start": start, "stop": stop})


def read_manifest(path: str | Path) -> dict[str, Any]:
    """What the cache at ``path`` holds (its ``cache.json``), without reading the shards.

    Raises:
        CacheError: ``path`` is not a cache, or one in another format.
    """
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.exists():
        raise CacheError(f"{path} is not a feature cache (no {MANIFEST}); make one with `repinv features`")
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise CacheError(f"{path} has cache format {manifest.get('format')}, this repinv reads {FORMAT}; make it "
                         "again with `repinv features`")
    return manifest


class FeatureCache(Dataset[tuple[Tensor, Tensor]]):
    """A finished feature cache, read into memory: item ``i`` is ``(image, features)`` of the ``i``-th crop.

    Args:
        path: the cache directory.

    Raises:
        CacheError: not a cache, an unfinished one, or one from an incompatible repinv.

    Shape:
        - image: ``(3, H, W)`` float32 in [0, 1]
        - features: the representation's ``(C, h, w)`` or ``(D,)``
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        count, shard_size = int(self.manifest["count"]), int(self.manifest["shard_size"])
        paths = [_shard_path(self.path, s) for s in range(math.ceil(count / shard_size))]
        missing = [path.name for path in paths if not path.exists()]
        if missing:
            raise CacheError(f"{self.path} is unfinished ({len(missing)} shards missing, first {missing[0]}); run "
                             "the same `repinv features` command again to finish it")
        self.spec = FeatureSpec(tuple(self.manifest["feature_shape"]))
        self._shards = [load_tensors(path) for path in paths]
        for shard in self._shards:
            if "cell_counts" in shard:  # row offsets of each image's cells, for random access
                shard["cell_start"] = torch.cumsum(shard["cell_counts"], 0) - shard["cell_counts"]

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
            return image, shard["features"][i].clone()
        channels, height, width = self.spec.shape
        start = int(shard["cell_start"][i])
        rows = slice(start, start + int(shard["cell_counts"][i]))
        cells = torch.zeros(height * width, channels)
        cells[shard["cell_index"][rows].long()] = shard["cell_values"][rows]
        return image, cells.t().reshape(channels, height, width)

    def images(self, count: int) -> Tensor:
        """The first ``count`` crops, ``(count, 3, H, W)`` (fewer when the cache is smaller)."""
        return torch.stack([self[i][0] for i in range(min(count, len(self)))])

