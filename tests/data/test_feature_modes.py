"""Where training features come from (repinv/data/features.py): feature_mode's choice among cache, workers, step
and batched, per_image_features, and with_features's pairs in each mode (grouped calls in batched mode)."""

from __future__ import annotations

import itertools

import pytest
import torch

from repinv.data.features import feature_mode, per_image_features, with_features
from repinv.registry.factories import create_representation
from repinv.representations.base import Representation

CPU = torch.device("cpu")


class _Counted(Representation):
    """HOG (a batched representation), recording the batch size of every call."""

    name = "counted-hog"

    def __init__(self, per_image: bool = False) -> None:
        super().__init__()
        self.per_image = per_image
        self.hog = create_representation("hog")
        self.calls: list[int] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(images))
        return self.hog(images)


@pytest.mark.parametrize(("per_image", "cached", "finetune", "mode"), [
    (False, False, False, "batched"),
    (True, False, False, "workers"),
    (False, False, True, "step"),
    (True, False, True, "step"),  # a fine-tuned representation computes in the step, per-image or not
    (False, True, False, "cache"),
    (True, True, False, "cache"),
    (False, True, True, "cache"),  # a cache wins over everything
])
def test_feature_mode(per_image, cached, finetune, mode):
    assert feature_mode(_Counted(per_image), cached=cached, finetune=finetune) == mode


def test_feature_mode_of_the_built_in_representations():
    assert feature_mode(create_representation("hog")) == "batched"
    assert feature_mode(create_representation("sift")) == "workers"


def test_per_image_features_are_the_batch_of_one_without_gradients():
    hog = create_representation("hog")
    image = torch.rand(3, 16, 16, requires_grad=True)
    features = per_image_features(hog, image)
    assert features.shape == (31, 2, 2) and not features.requires_grad
    torch.testing.assert_close(features, hog(image.detach()[None])[0], rtol=0, atol=0)


def _batches(count: int = 7, size: int = 4) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [torch.rand(size if k < count - 1 else 2, 3, 16, 16, generator=generator) for k in range(count)]


def test_batched_mode_computes_features_for_groups_of_batches():
    representation, batches = _Counted(), _batches()
    pairs = list(with_features(batches, representation, "batched", CPU, group=3))
    assert representation.calls == [12, 12, 2]  # 3 + 3 + 1 batches of 4 (the last one of 2)
    assert len(pairs) == 7
    for (images, features), batch in zip(pairs, batches):
        assert torch.equal(images, batch)
        torch.testing.assert_close(features, representation.hog(batch), rtol=0, atol=1e-6)


def test_batched_mode_with_groups_of_one_calls_per_batch():
    representation, batches = _Counted(), _batches(3)
    pairs = list(with_features(batches, representation, "batched", CPU))
    assert representation.calls == [4, 4, 2] and [len(features) for _, features in pairs] == [4, 4, 2]


def test_batched_mode_reads_one_group_ahead_only():
    representation, batches = _Counted(), iter(_batches())
    pairs = with_features(batches, representation, "batched", CPU, group=3)
    next(pairs)
    assert representation.calls == [12] and len(list(batches)) == 4  # the other four batches are still unread
    assert list(with_features([], representation, "batched", CPU, group=3)) == []


def test_step_mode_leaves_the_features_to_the_step():
    representation, batches = _Counted(), _batches(3)
    pairs = list(with_features(batches, representation, "step", CPU, group=3))
    assert [features for _, features in pairs] == [None, None, None]
    assert all(torch.equal(images, batch) for (images, _), batch in zip(pairs, batches))
    assert representation.calls == []


@pytest.mark.parametrize("mode", ["cache", "workers"])
def test_cache_and_workers_modes_pass_pairs_through(mode):
    representation = _Counted()
    batches = [[torch.rand(4, 3, 16, 16), torch.rand(4, 31, 2, 2)] for _ in range(3)]  # as a data loader collates
    pairs = list(with_features(iter(batches), representation, mode, CPU, group=2))
    assert len(pairs) == 3 and representation.calls == []
    for (images, features), (batch_images, batch_features) in zip(pairs, batches):
        assert torch.equal(images, batch_images) and torch.equal(features, batch_features)


def test_pairs_are_a_lazy_stream():
    representation = _Counted()
    endless = (torch.rand(2, 3, 16, 16) for _ in itertools.count())
    first = list(itertools.islice(with_features(endless, representation, "batched", CPU, group=2), 3))
    assert len(first) == 3 and representation.calls == [4, 4]
