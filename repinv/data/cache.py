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
when run again with the same arguments. While it runs it holds a lock (an ``flock`` on ``.lock`` in the folder,
released on exit or kill), so a second ``repinv features`` on the same cache is refused rather than racing it.
Reading checks ``cache.json`` and every shard against each other: a damaged shard or a hand-edited manifest is
an error that names it, never wrong features. Storage is compact: images as 8-bit when every pixel is a multiple of
1/255 (crops that needed no resizing), float32 otherwise; feature maps keep only their cells that are not all zero
(most of a sparse SIFT map is empty), vectors are stored whole. Feature values are stored in float32 (lossless) or,
with ``dtype``, in float16 or bfloat16 (half the disk and memory; ``feature_dtype`` in ``cache.json``), and read
back as float32.

Several representations (``repinv features --rep A --rep B --out ROOT``) make one cache each, in ``ROOT/<name>``
(:func:`cache_folder_name`), from one pass over the images: each batch is given to all of them together
(:func:`~repinv.representations.base.features_together`), so layers of one network share its forward pass, and
each cache equals the one its representation makes alone.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, overload

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from repinv.data.cache_format import FEATURE_DTYPES, FORMAT, MANIFEST, FeatureCache, read_manifest, shard_path
from repinv.data.features import feature_mode, per_image_features, with_features
from repinv.data.indexing import absolute_source
from repinv.data.sources import DataWarning, DecodeWarning, ImageDataset, skip_summary
from repinv.errors import CacheError, InvalidOption
from repinv.files import exclusive_lock, save_tensors, write_json
from repinv.options import Option, validate_options
from repinv.progress import progress_bar
from repinv.registry.factories import create_representation
from repinv.representations.base import Representation, features_together
from repinv.utils import VERSION, resolve_device

__all__ = ["cache_features", "cache_folder_name", "FeatureCache", "read_manifest", "MANIFEST"]

_LOCK = ".lock"  # held by the process writing the cache
CACHE_OPTIONS = (Option("shard_size", 1024, int, "images per shard file", minimum=1),
                 Option("batch_size", 64, int, "images per batch of feature computation", minimum=1),
                 Option("dtype", "float32", FEATURE_DTYPES, "how feature values are stored (float32: exactly)"))


@contextmanager
def _writing(root: Path) -> Iterator[None]:
    """Hold the cache folder for this process while it writes there (see the module docstring)."""
    def busy(holder: str) -> CacheError:
        return CacheError(f"{root} is being written by another `repinv features` process ({holder}); wait for it "
                          "or stop it")

    def unwritable(reason: str) -> CacheError:
        return CacheError(f"cannot write the feature cache in {root} ({reason}); choose another --out")

    with exclusive_lock(root / _LOCK, busy, unwritable):
        yield


class _Crops(Dataset[Tensor | tuple[Tensor, Tensor]]):
    """Centre crops of ``images`` for items ``start .. stop - 1``, with their features when computed per image."""

    def __init__(self, images: ImageDataset, start: int, stop: int, representation: Representation | None) -> None:
        self.images, self.start, self.stop, self.representation = images, start, stop, representation

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> Tensor | tuple[Tensor, Tensor]:
        image = self.images[self.start + i]
        return image if self.representation is None else (image, per_image_features(self.representation, image))


def _encode(images: Tensor, features: Tensor, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """Compact tensors of one shard (see the module docstring): lossless but for features stored in ``dtype``."""
    levels = (images * 255).round()
    exact = torch.equal(levels / 255, images)
    tensors = {"images": levels.to(torch.uint8) if exact else images.float().contiguous()}
    if features.dim() == 2:
        tensors["features"] = features.to(dtype).contiguous()
        return tensors
    cells = features.flatten(2).transpose(1, 2)  # (B, h*w, C)
    occupied = cells.ne(0).any(-1)  # (B, h*w)
    tensors["cell_values"] = cells[occupied].to(dtype).contiguous()  # (N, C)
    tensors["cell_index"] = occupied.nonzero()[:, 1].to(torch.int32)  # (N,) flat cell of each row
    tensors["cell_counts"] = occupied.sum(1).to(torch.int64)  # (B,) rows per image
    return tensors


@overload
def cache_features(rep: str | Representation, data: str | Sequence[str], out: str | Path, *,  # type: ignore[overload-overlap]  # a str is one name, not a sequence of them
                   rep_options: dict[str, Any] | None = None, image_size: int = 64, shard_size: int = 1024,
                   batch_size: int = 64, workers: int = 2, device: str = "auto", dtype: str = "float32",
                   show_progress: bool = True) -> FeatureCache: ...


@overload
def cache_features(rep: Sequence[str | Representation], data: str | Sequence[str], out: str | Path, *,
                   rep_options: dict[str, Any] | None = None, image_size: int = 64, shard_size: int = 1024,
                   batch_size: int = 64, workers: int = 2, device: str = "auto", dtype: str = "float32",
                   show_progress: bool = True) -> list[FeatureCache]: ...


def cache_features(rep: str | Representation | Sequence[str | Representation], data: str | Sequence[str],
                   out: str | Path, *, rep_options: dict[str, Any] | None = None, image_size: int = 64,
                   shard_size: int = 1024, batch_size: int = 64, workers: int = 2, device: str = "auto",
                   dtype: str = "float32", show_progress: bool = True) -> FeatureCache | list[FeatureCache]:
    """Compute and store the features of every image of ``data`` (centre crops), resuming a partial cache.

    With several representations (a list), ``out`` is a folder holding one cache per representation, in a subfolder
    named after it (:func:`cache_folder_name`: ``timm:resnet18:layer3`` → ``timm-resnet18-layer3``), each a normal
    cache (its own ``cache.json``, shards and lock, resumed on its own). They are computed from one pass over the
    images, each batch given to all of them together (:func:`~repinv.representations.base.features_together`):
    several layers of one network then share one forward pass.

    Args:
        rep: a representation name (``sift``, ``alexnet:conv5``) or instance, or a list of them.
        data: image sources, as for :class:`repinv.ImageDataset`.
        out: the cache directory (created; an interrupted cache made with the same arguments is continued); with a
            list of representations, the folder of their caches.
        rep_options: options for the representation's factory (with a name); with a list, for every name in it.
        image_size: side of the centre crops.
        shard_size: images per shard file.
        batch_size: images per batch of feature computation.
        workers: data-loader worker processes (per-image representations run in them).
        device: where batched representations run.
        dtype: how feature values are stored: ``float32`` (exactly), ``float16`` or ``bfloat16`` (half the disk
            and memory; read back as float32).
        show_progress: show a progress bar over the images.

    Returns:
        The finished cache; with a list of representations, the finished caches in its order.

    Raises:
        CacheError: ``out`` holds a cache made with other arguments, a damaged one, or another process is writing
            it.
        InvalidOption: several representations of which one is per-image (SIFT: computed in the data-loader
            workers, one cache at a time), or two with the same folder name; other bad options.
        DataError, UnknownRepresentation, WeightsUnavailable: bad arguments, data or weights.
    """
    shard_size, batch_size, dtype = validate_options(
        "feature cache", {"shard_size": shard_size, "batch_size": batch_size, "dtype": dtype}, CACHE_OPTIONS).values()
    several = not isinstance(rep, (str, Representation))
    given: list[str | Representation] = list(rep) if not isinstance(rep, (str, Representation)) else [rep]
    if not given:
        raise InvalidOption("cache_features needs at least one representation")
    dev = resolve_device(device)
    representations = [r if isinstance(r, Representation) else create_representation(r, **(rep_options or {}))
                       for r in given]
    if len(representations) > 1:
        per_image = [r.name for r in representations if r.per_image]
        if per_image:
            raise InvalidOption(f"{', '.join(per_image)} computes features per image in the data-loader workers and "
                                "cannot share a pass over the images with other representations; cache it on its own")
    root = Path(out)
    roots = [root / cache_folder_name(r.name) for r in representations] if several else [root]
    if len(set(roots)) < len(roots):
        names = [r.name for r in representations]
        raise InvalidOption(f"the representations {', '.join(names)} would share a cache folder; give each once")
    # Now: a weights file that cannot be read (or a failed download) must not leave a half-made cache, and worker
    # processes then share the loaded weights instead of each loading them.
    representations = [r.load_weights().to(dev).eval() for r in representations]
    images = ImageDataset(data, image_size, train=False)
    with contextlib.ExitStack() as held:
        for representation, folder in zip(representations, roots):
            held.enter_context(_writing(folder))
            _start_manifest(representation, images, folder, shard_size, dtype)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DecodeWarning)  # totalled in one line below
                _write_shards(representations, images, roots, shard_size, batch_size, workers, dev, show_progress,
                              getattr(torch, dtype))
        except KeyboardInterrupt:
            raise CacheError(f"interrupted; the finished shards are kept in {root}: run the same command again to "
                             "continue") from None
        finally:
            if (summary := skip_summary(images, "feature caching")) is not None:
                warnings.warn(summary, DataWarning, stacklevel=2)
    caches = [FeatureCache(folder) for folder in roots]
    return caches if several else caches[0]


def cache_folder_name(name: str) -> str:
    """A representation's name made safe as a folder name: ``timm:resnet18:layer3`` → ``timm-resnet18-layer3``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return safe or "representation"


def _start_manifest(representation: Representation, images: ImageDataset, root: Path, shard_size: int,
                    dtype: str) -> None:
    """Write the cache's ``cache.json``, or check that the one there was made with the same arguments."""
    size = images.image_size
    manifest = {"format": FORMAT, "representation": {"name": representation.name,
                                                     "options": representation.config()},
                "image_size": list(size), "feature_shape": list(representation.spec(size).shape),
                "sources": [absolute_source(source) for source in images.sources], "count": len(images),
                "shard_size": shard_size, "feature_dtype": dtype}
    existing = root / MANIFEST
    if existing.exists():
        previous = {"feature_dtype": "float32",  # caches made before the option stored float32
                    **{k: v for k, v in read_manifest(root).items() if k != "repinv_version"}}
        if previous.get("sources") == images.sources:  # made before sources were stored absolute, from here
            previous["sources"] = manifest["sources"]
        changed = [key for key in manifest if previous.get(key) != manifest[key]]
        if changed:
            raise CacheError(f"{root} holds a feature cache made with other {', '.join(changed)}; remove it or "
                             "choose another --out")
    else:
        write_json(existing, {**manifest, "repinv_version": VERSION})


def _write_shards(representations: list[Representation], images: ImageDataset, roots: list[Path], shard_size: int,
                  batch_size: int, workers: int, dev: torch.device, show_progress: bool, dtype: torch.dtype) -> None:
    """Compute and write every shard not written yet, of every cache (``representations[i]`` into ``roots[i]``)."""
    shards = math.ceil(len(images) / shard_size)
    first = representations[0]
    mode = feature_mode(first)  # several representations are all batched (checked by the caller)
    per_image = first if mode == "workers" else None
    label = ", ".join(representation.name for representation in representations)
    with progress_bar(f"features {label}", total=len(images), enabled=show_progress) as advance:
        for shard in range(shards):
            start, stop = shard * shard_size, min(len(images), (shard + 1) * shard_size)
            missing = [i for i, root in enumerate(roots) if not shard_path(root, shard).exists()]
            if not missing:
                advance(stop - start)
                continue
            loader = DataLoader(_Crops(images, start, stop, per_image), batch_size=batch_size, num_workers=workers)
            crops: list[Tensor] = []
            features: list[list[Tensor]] = [[] for _ in missing]
            batches: Iterator[tuple[Tensor, list[Tensor | None]]]
            if len(representations) == 1:
                batches = ((crop, [computed]) for crop, computed in with_features(loader, first, mode, dev))
            else:
                batches = _together(loader, [representations[i] for i in missing], dev)
            for crop, computed in batches:
                crops.append(crop.cpu())
                for part, tensor in zip(features, computed):
                    assert tensor is not None  # only training's "step" mode leaves features to later
                    part.append(tensor.cpu())
                advance(len(crop))
            images_of_shard = torch.cat(crops)
            for i, part in zip(missing, features):
                save_tensors(shard_path(roots[i], shard), _encode(images_of_shard, torch.cat(part), dtype),
                             {"start": start, "stop": stop})


def _together(loader: DataLoader[Any], representations: list[Representation], dev: torch.device
              ) -> Iterator[tuple[Tensor, list[Tensor | None]]]:
    """The loader's image batches on ``dev`` with every representation's features, computed together."""
    for batch in loader:
        crop = batch.to(dev, non_blocking=True)
        with torch.no_grad():
            computed: list[Tensor | None] = list(features_together(representations, crop))
        yield crop, computed


