"""The training data stream: which image each step sees, and how a virtual index becomes a training sample.

Data order and augmentation are functions of (seed, sample position) only, so a resumed run, or a run split over
several processes, sees exactly the samples an uninterrupted single-process run would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from repinv.data.cache import FeatureCache
from repinv.data.features import per_image_features
from repinv.data.sources import ImageDataset
from repinv.representations.base import Representation

__all__ = ["PositionSampler", "TrainingSamples"]


class PositionSampler(Sampler[int]):
    """An endless, resumable stream of sample positions, split over ranks.

    Global position ``p`` maps to epoch ``p // n`` and to that epoch's seeded permutation; the sampler yields
    *virtual indices* ``epoch × n + index`` so the dataset can seed augmentation per (epoch, index) in any worker.
    Rank ``r`` of ``w`` takes positions ``start + r, start + r + w, …``, so ranks see disjoint samples.
    """

    def __init__(self, size: int, seed: int, start: int = 0, rank: int = 0, world: int = 1) -> None:
        self.size, self.seed, self.start, self.rank, self.world = size, seed, start, rank, world

    def __iter__(self) -> Iterator[int]:
        position, epoch, order = self.start + self.rank, -1, torch.empty(0, dtype=torch.long)
        while True:
            if position // self.size != epoch:
                epoch = position // self.size
                order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            yield epoch * self.size + int(order[position % self.size])
            position += self.world


class TrainingSamples(Dataset[Tensor | tuple[Tensor, Tensor]]):
    """Maps virtual indices to augmented images (with their features when ``representation`` is given: the
    ``"workers"`` mode of :mod:`repinv.data.features`), or to the stored pairs of a feature cache."""

    def __init__(self, images: ImageDataset | FeatureCache, representation: Representation | None) -> None:
        self.images, self.representation = images, representation

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, virtuals: Sequence[int]) -> list[Tensor | tuple[Tensor, Tensor]]:
        """A batch of virtual indices; plain images are decoded together (see :meth:`ImageDataset.__getitems__`),
        epoch by epoch, in the order given."""
        if isinstance(self.images, FeatureCache) or self.representation is not None:
            return [self[virtual] for virtual in virtuals]
        places = [divmod(int(virtual), len(self.images)) for virtual in virtuals]
        batch: list[Tensor | tuple[Tensor, Tensor]] = [torch.empty(0)] * len(places)
        for epoch in dict.fromkeys(epoch for epoch, _ in places):  # one epoch, or two where a batch spans the end
            positions = [k for k, (e, _) in enumerate(places) if e == epoch]
            self.images.set_epoch(epoch)
            for position, image in zip(positions, self.images.__getitems__([places[k][1] for k in positions])):
                batch[position] = image
        return batch

    def __getitem__(self, virtual: int) -> Tensor | tuple[Tensor, Tensor]:
        epoch, index = divmod(virtual, len(self.images))
        if isinstance(self.images, FeatureCache):
            return self.images[index]
        self.images.set_epoch(epoch)
        image = self.images[index]
        return image if self.representation is None else (image, per_image_features(self.representation, image))
