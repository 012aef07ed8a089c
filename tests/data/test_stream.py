"""The training data stream (repinv/data/stream.py): PositionSampler's endless, resumable, rank-split stream of
virtual indices, and TrainingSamples turning virtual indices into images, image-feature pairs or cached pairs."""

from __future__ import annotations

import itertools

import pytest
import torch

from repinv.data.cache import cache_features
from repinv.data.features import per_image_features
from repinv.data.sources import ImageDataset
from repinv.data.stream import PositionSampler, TrainingSamples
from repinv.representations.base import Representation


def _take(sampler: PositionSampler, count: int) -> list[int]:
    return list(itertools.islice(iter(sampler), count))


# ---------------------------------------------------------------------------------------------------- the sampler


def test_each_epoch_is_a_permutation_carried_in_virtual_indices():
    n = 7
    stream = _take(PositionSampler(n, seed=4), 4 * n)
    for epoch in range(4):
        chunk = stream[epoch * n:(epoch + 1) * n]
        assert all(v // n == epoch for v in chunk)  # virtual index = epoch * n + index
        assert sorted(v % n for v in chunk) == list(range(n))  # every image exactly once per epoch


def test_the_order_is_the_seeded_permutation_of_each_epoch():
    n, seed = 9, 5
    stream = _take(PositionSampler(n, seed=seed), 2 * n)
    for epoch in range(2):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
        assert [v - epoch * n for v in stream[epoch * n:(epoch + 1) * n]] == order


def test_the_stream_is_deterministic_per_seed_and_differs_between_epochs():
    n = 10
    first = _take(PositionSampler(n, seed=3), 3 * n)
    assert first == _take(PositionSampler(n, seed=3), 3 * n)
    assert first != _take(PositionSampler(n, seed=4), 3 * n)
    orders = [[v % n for v in first[e * n:(e + 1) * n]] for e in range(3)]
    assert orders[0] != orders[1] and orders[1] != orders[2] and orders[0] != orders[2]


def test_a_stream_started_later_is_the_uninterrupted_stream_from_there():
    n = 6
    stream = _take(PositionSampler(n, seed=2), 40)
    for start in (0, 1, 5, 6, 7, 13, 29):  # within an epoch, at an epoch's end and start, several epochs on
        assert _take(PositionSampler(n, seed=2, start=start), 11) == stream[start:start + 11], start


@pytest.mark.parametrize(("world", "start"), [(2, 0), (3, 0), (3, 5), (4, 11)])
def test_ranks_take_disjoint_positions_whose_union_is_the_single_stream(world, start):
    n, count = 7, 10
    stream = _take(PositionSampler(n, seed=1), start + world * count)
    ranks = [_take(PositionSampler(n, seed=1, start=start, rank=rank, world=world), count) for rank in range(world)]
    for rank, taken in enumerate(ranks):
        assert taken == stream[start + rank::world][:count]  # positions start + rank, start + rank + world, ...
    every = [v for taken in ranks for v in taken]
    assert len(set(every)) == len(every)  # disjoint: a virtual index names one position
    assert sorted(every) == sorted(stream[start:start + world * count])


# ------------------------------------------------------------------------------------------------------ the samples


class _ChannelMeans(Representation):
    """A per-image representation (features computed in data-loader workers): each channel's mean and maximum."""

    name = "channel-means"
    per_image = True

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([images.mean(dim=(2, 3)), images.amax(dim=(2, 3))], dim=1)


@pytest.fixture(scope="module")
def dataset(photo_folder):
    return ImageDataset(str(photo_folder), 16, train=True, seed=1)


def _virtuals(n: int) -> list[int]:
    """A batch spanning an epoch's end: the last three positions of epoch 0 and the first three of epoch 1."""
    return _take(PositionSampler(n, seed=7, start=n - 3), 6)


def test_plain_samples_are_the_augmented_images_of_their_epoch(dataset):
    samples = TrainingSamples(dataset, None)
    n = len(samples)
    assert n == len(dataset) == 12
    fresh = ImageDataset(dataset.sources, 16, train=True, seed=1)
    for virtual in (3, n + 3, 2 * n + 11):
        image = samples[virtual]
        assert isinstance(image, torch.Tensor) and image.shape == (3, 16, 16)
        fresh.set_epoch(virtual // n)
        assert torch.equal(image, fresh[virtual % n])
    assert any(not torch.equal(samples[i], samples[n + i]) for i in range(n))  # augmentation is drawn per epoch


def test_a_plain_batch_equals_the_items_one_by_one(dataset):
    samples = TrainingSamples(dataset, None)
    virtuals = _virtuals(len(samples))
    assert {v // len(samples) for v in virtuals} == {0, 1}
    batch = samples.__getitems__(virtuals)
    assert len(batch) == len(virtuals)
    for virtual, image in zip(virtuals, batch):
        assert torch.equal(image, samples[virtual])


def test_with_a_per_image_representation_samples_are_image_feature_pairs(dataset):
    representation = _ChannelMeans()
    samples, plain = TrainingSamples(dataset, representation), TrainingSamples(dataset, None)
    virtuals = _virtuals(len(samples))
    batch = samples.__getitems__(virtuals)
    for virtual, pair in zip(virtuals, batch):
        image, features = samples[virtual]
        assert torch.equal(image, plain[virtual]) and features.shape == (6,)
        assert torch.equal(features, per_image_features(representation, image))
        assert torch.equal(pair[0], image) and torch.equal(pair[1], features)


def test_cached_samples_are_the_caches_pairs_in_every_epoch(photo_folder, tmp_path):
    cache = cache_features("hog", str(photo_folder), tmp_path / "cache", image_size=16, shard_size=5, workers=0,
                           device="cpu", show_progress=False)
    samples = TrainingSamples(cache, None)
    assert len(samples) == 12
    virtuals = _virtuals(12)
    for virtual, (image, features) in zip(virtuals, samples.__getitems__(virtuals)):
        expected_image, expected_features = cache[virtual % 12]
        assert torch.equal(image, expected_image) and torch.equal(features, expected_features)
