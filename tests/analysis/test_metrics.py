"""Metrics: SSIM against scikit-image, PSNR, pairwise normalizers, the reservoir, method summaries."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from repinv.analysis.metrics import ErrorScale, MethodScores, Reservoir, mean_pairwise_distance, psnr, ssim


def test_ssim_matches_scikit_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 40, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(2, 3, 32, 40, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(x, y)
    for i in range(2):
        reference = structural_similarity(x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy(),
                                          gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=1.0, channel_axis=2)
        assert ours[i].item() == pytest.approx(reference, abs=1e-6)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))


def test_psnr_of_known_error():
    x = torch.zeros(1, 3, 8, 8)
    assert psnr(x, x + 0.1).item() == pytest.approx(20.0, abs=1e-4)


def test_mean_pairwise_distance_equals_brute_force():
    samples = torch.randn(7, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    pairs = list(itertools.combinations(range(7), 2))
    brute = np.mean([(samples[i] - samples[j]).norm().item() for i, j in pairs])
    brute_sq = np.mean([(samples[i] - samples[j]).pow(2).sum().item() for i, j in pairs])
    assert mean_pairwise_distance(samples, chunk=3) == pytest.approx(brute, rel=1e-5)
    assert mean_pairwise_distance(samples, squared=True) == pytest.approx(brute_sq, rel=1e-5)


def test_reservoir_is_bounded_and_roughly_uniform():
    counts = torch.zeros(100)
    for seed in range(200):
        reservoir = Reservoir(10, seed)
        reservoir.add(torch.arange(100.0).view(100, 1))
        assert len(reservoir.items) == 10
        counts[reservoir.stack().long().flatten()] += 1
    # each item is kept with probability 0.1: 20 of 200 trials expected
    assert counts[:50].sum().item() == pytest.approx(counts[50:].sum().item(), rel=0.2)


def test_normalized_error_zero_for_perfect_and_one_scale_for_shuffled():
    g = torch.Generator().manual_seed(2)
    images = torch.rand(16, 3, 16, 16, generator=g)
    scale, perfect, shuffled = ErrorScale(), MethodScores(), MethodScores()
    scale.add(images, images.flatten(1))
    perfect.add(images, images, images.flatten(1), images.flatten(1))
    shuffled.add(images, images.roll(1, 0), images.flatten(1), images.roll(1, 0).flatten(1))
    exact = scale.summarize(perfect)
    assert exact["normalized_error"] == 0 and exact["feature_error"] == 0 and exact["ssim"] == pytest.approx(1)
    # another test image as the "reconstruction" scores about 1 on both scales
    other = scale.summarize(shuffled)
    assert other["normalized_error"] == pytest.approx(1.0, abs=0.1)
    assert other["feature_error"] == pytest.approx(1.0, abs=0.15)
    assert not math.isnan(other["psnr"])


def test_reconstructions_are_clamped_before_scoring():
    images = torch.full((2, 3, 12, 12), 1.0)
    scale, scores = ErrorScale(), MethodScores()
    scale.add(torch.stack([images[0], images[0] * 0]))
    scores.add(images, images + 5.0)
    assert scale.summarize(scores)["normalized_error"] == 0.0


def test_colour_error_sees_only_mean_colours_and_layout_error_only_block_means():
    """Shuffling pixels within 16x16 blocks keeps both; a colour shift moves the colour error; swapping the image's
    halves keeps the mean colours but not the layout."""
    torch.manual_seed(0)
    images = torch.rand(6, 3, 64, 64) * 0.5 + 0.25
    blocks = images.unfold(2, 16, 16).unfold(3, 16, 16).reshape(6, 3, 4, 4, 256)
    shuffled = blocks[..., torch.randperm(256)].reshape(6, 3, 4, 4, 16, 16).permute(0, 1, 2, 4, 3, 5)
    shuffled = shuffled.reshape(6, 3, 64, 64)
    shifted = (images + torch.tensor([0.2, 0.0, -0.2]).view(1, 3, 1, 1)).clamp(0, 1)
    swapped = images.roll(32, dims=-1)
    errors = {}
    for name, reconstructions in (("shuffled", shuffled), ("shifted", shifted), ("swapped", swapped)):
        scale, scores = ErrorScale(), MethodScores()
        scale.add(images)
        scores.add(images, reconstructions)
        errors[name] = scale.summarize(scores)
    assert errors["shuffled"]["colour_error"] == pytest.approx(0, abs=1e-5)
    assert errors["shuffled"]["layout_error"] == pytest.approx(0, abs=1e-5)
    assert errors["shuffled"]["normalized_error"] > 0.5
    assert errors["shifted"]["colour_error"] > 1.0  # far more than the photos' own colour differences
    assert errors["swapped"]["colour_error"] == pytest.approx(0, abs=1e-5)
    assert errors["swapped"]["layout_error"] > 0.5
