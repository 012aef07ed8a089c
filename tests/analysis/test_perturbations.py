"""Perturbations and random features: the properties the design states, determinism, per-sample application."""

from __future__ import annotations

import pytest
import torch

from repinv.analysis.perturbations import BUILTINS, apply_perturbation, parse_perturbation
from repinv.analysis.random_features import fit_distribution
from repinv.errors import InvalidOption, ShapeError, UnknownName
from repinv.registry.manager import get_registry


def _features(batch: int = 4, shape: tuple[int, ...] = (31, 4, 4), sparsity: float = 0.3, seed: int = 0):
    """Signed features with exact zeros at the given share and no two magnitudes alike."""
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(batch, *shape, generator=g)
    return torch.where(torch.rand(batch, *shape, generator=g) < sparsity, 0.0, values)


def _norms(x):
    return x.flatten(1).norm(dim=1)


def test_builtins_are_registered_by_the_core_plugin():
    registry = get_registry()
    for name in BUILTINS:
        assert registry.perturbations[name].plugin == "repinv.analysis.perturbations"
        assert registry.perturbations[name].description


@pytest.mark.parametrize("shape", [(31, 4, 4), (100,)])
def test_binarize_keeps_signs_and_norm_with_one_magnitude(shape):
    x = _features(shape=shape)
    y = apply_perturbation("binarize", x)
    assert torch.equal(torch.sign(y), torch.sign(x))
    assert torch.allclose(_norms(y), _norms(x), rtol=1e-5)
    for sample in y:
        magnitudes = sample[sample != 0].abs()
        assert torch.allclose(magnitudes, magnitudes[0].expand_as(magnitudes), rtol=1e-6)


@pytest.mark.parametrize("text, rate", [("dropout", 0.5), ("dropout:0.3", 0.3), ("dropout:0.9", 0.9)])
def test_dropout_keeps_norm_and_zeroes_the_requested_share(text, rate):
    x = _features(sparsity=0.0)
    y = apply_perturbation(text, x, seed=3)
    n = x[0].numel()
    assert ((y == 0).flatten(1).sum(1) == round(rate * n)).all()
    assert torch.allclose(_norms(y), _norms(x), rtol=1e-5)
    kept = y != 0  # surviving entries are the originals times one factor per sample
    ratio = (y[kept] / x[kept]).view(x.shape[0], -1)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-5)


def test_dropout_binarize_zeroes_then_binarizes_at_the_original_norm():
    x = _features(sparsity=0.0)
    y = apply_perturbation("dropout+binarize", x, seed=1)
    assert ((y == 0).flatten(1).sum(1) == round(0.5 * x[0].numel())).all()
    assert torch.allclose(_norms(y), _norms(x), rtol=1e-5)
    assert len(torch.unique(y[0][y[0] != 0].abs().round(decimals=5))) == 1
    # the same seed drops the same entries as plain dropout
    assert torch.equal(y == 0, apply_perturbation("dropout", x, seed=1) == 0)


@pytest.mark.parametrize("text, share", [("drop-least+binarize", 0.5), ("drop-least+binarize:0.25", 0.25)])
def test_drop_least_removes_the_smallest_magnitudes(text, share):
    x = _features(sparsity=0.3)
    y = apply_perturbation(text, x)
    for before, after in zip(x, y):
        nonzero = before != 0
        dropped, kept = nonzero & (after == 0), after != 0
        assert int(dropped.sum()) == round(share * int(nonzero.sum()))
        assert before[dropped].abs().max() < before[kept].abs().min()
        assert torch.equal(torch.sign(after[kept]), torch.sign(before[kept]))
        assert len(torch.unique(after[kept].abs().round(decimals=5))) == 1
        assert after.norm() == pytest.approx(float(before.norm()), rel=1e-5)


@pytest.mark.parametrize("k", [1, 5, 40])
def test_keep_top_leaves_exactly_k_largest_and_drop_top_removes_them(k):
    x = _features(sparsity=0.0)
    kept = apply_perturbation(f"keep-top:{k}", x)
    dropped = apply_perturbation(f"drop-top:{k}", x)
    assert ((kept != 0).flatten(1).sum(1) == k).all()
    for original, top, rest in zip(x.flatten(1), kept.flatten(1), dropped.flatten(1)):
        largest = original.topk(k).indices
        assert torch.equal(top[largest], original[largest])
        assert (rest[largest] == 0).all() and int((rest != 0).sum()) == original.numel() - k
        assert torch.equal(top + rest, original)


def test_perturbations_are_deterministic_given_a_seed():
    x = _features()
    for name in ("dropout", "dropout+binarize"):
        assert torch.equal(apply_perturbation(name, x, seed=7), apply_perturbation(name, x, seed=7))
        assert not torch.equal(apply_perturbation(name, x, seed=7), apply_perturbation(name, x, seed=8))


def test_each_sample_is_perturbed_on_its_own():
    x = _features(batch=6)
    batch = apply_perturbation("dropout", x, seed=2)
    # a sample gets the same result alone (at its data-set index) as inside a batch: batching changes nothing
    for i in range(6):
        assert torch.equal(apply_perturbation("dropout", x[i:i + 1], seed=2, first_index=i)[0], batch[i])
    assert not torch.equal(batch[0] == 0, batch[1] == 0)  # and samples get different masks
    # binarize's magnitude is per sample: scaling one sample leaves the others unchanged
    scaled = x.clone()
    scaled[0] *= 10
    assert torch.equal(apply_perturbation("binarize", scaled)[1:], apply_perturbation("binarize", x)[1:])


def test_all_zero_features_stay_zero():
    zeros = torch.zeros(2, 3, 4, 4)
    for text in ("binarize", "dropout", "dropout+binarize", "drop-least+binarize"):
        assert torch.equal(apply_perturbation(text, zeros), zeros)


@pytest.mark.parametrize("text, error, fragment", [
    ("binarize:3", InvalidOption, "takes no argument"),
    ("dropout:1.5", InvalidOption, "[0, 1)"),
    ("dropout:abc", InvalidOption, "RATE"),
    ("keep-top", InvalidOption, "needs K"),
    ("keep-top:0", InvalidOption, "K must be an integer in [1, 496], got 0"),
    ("drop-top:497", InvalidOption, "K must be an integer in [1, 496], got 497"),
    ("dropout:", InvalidOption, "NAME:ARG"),
    ("binarise", UnknownName, "unknown perturbation 'binarise'; available: binarize"),
])
def test_bad_names_and_arguments_are_clear(text, error, fragment):
    with pytest.raises(error) as raised:
        apply_perturbation(text, _features())
    assert fragment in str(raised.value)


def test_parse_splits_at_the_first_colon():
    assert parse_perturbation("binarize") == ("binarize", None)
    assert parse_perturbation("mine:a:b") == ("mine", "a:b")


def test_a_perturbation_that_changes_the_shape_is_refused():
    import repinv
    from repinv import hookimpl

    class Squash:
        @hookimpl
        def register_perturbations(self, register):
            register("squash", lambda features, arg, *, generator: features.flatten())

    name = repinv.register_plugin(Squash(), name="squash-plugin")
    try:
        with pytest.raises(ShapeError, match="squash returned"):
            apply_perturbation("squash", _features())
    finally:
        repinv.unregister_plugin(name)


# Random features ------------------------------------------------------------------------------------------------

def _relu_features(n: int = 512, dims: int = 300):
    """Non-negative features whose dimensions differ in sparsity (10% to 90% zeros) and scale."""
    g = torch.Generator().manual_seed(0)
    zero_rate = torch.linspace(0.1, 0.9, dims)
    scale = torch.linspace(0.5, 3.0, dims)
    values = torch.rand(n, dims, generator=g).mul(scale).add(0.01)
    return torch.where(torch.rand(n, dims, generator=g) < zero_rate, 0.0, values)


@pytest.mark.parametrize("method", ["histogram", "gaussian"])
@pytest.mark.parametrize("sparsity", [None, 0.2, 0.75])
def test_random_features_match_the_sparsity_within_two_percent(method, sparsity):
    real = _relu_features()
    model = fit_distribution(real, method)
    assert model.sparsity == pytest.approx(float((real == 0).float().mean()))
    samples = model.sample(16, generator=torch.Generator().manual_seed(1), sparsity=sparsity)
    target = model.sparsity if sparsity is None else sparsity
    assert samples.shape == (16, 300)
    per_vector = (samples == 0).float().mean(1)
    assert (per_vector - target).abs().max() <= 0.02
    assert (samples >= 0).all()  # non-negative features give non-negative samples


def test_histogram_samples_follow_each_dimension():
    real = _relu_features(n=2048)
    model = fit_distribution(real, "histogram")
    samples = model.sample(2000, generator=torch.Generator().manual_seed(0))
    nonzero = samples != 0
    low = torch.where(real != 0, real, float("inf")).amin(0)
    high = real.amax(0)
    assert ((samples >= low - 1e-5) | ~nonzero).all() and ((samples <= high + 1e-5) | ~nonzero).all()
    # dimensions that are often zero in real features are often zero in samples
    sample_rate = 1 - nonzero.float().mean(0)
    assert torch.corrcoef(torch.stack([sample_rate, model.zero_rate]))[0, 1] > 0.9
    means = samples.sum(0) / nonzero.sum(0)
    real_means = real.sum(0) / (real != 0).sum(0)
    assert torch.allclose(means, real_means, rtol=0.1)


def test_gaussian_fits_the_pooled_non_zero_values_and_alpha_scales():
    real = _relu_features()
    model = fit_distribution(real, "gaussian")
    values = real[real != 0]
    assert model.mean == pytest.approx(float(values.mean()), rel=1e-5)
    assert model.std == pytest.approx(float(values.std()), rel=1e-5)
    generator = lambda: torch.Generator().manual_seed(4)
    once = model.sample(4, generator=generator())
    assert torch.equal(once, model.sample(4, generator=generator()))
    assert torch.allclose(model.sample(4, generator=generator(), alpha=2.0), 2 * once)


def test_signed_features_are_not_truncated():
    real = torch.randn(256, 50, generator=torch.Generator().manual_seed(0))
    model = fit_distribution(real, "gaussian")
    assert not model.nonnegative and model.sparsity == 0
    assert (model.sample(8, generator=torch.Generator().manual_seed(0)) < 0).any()


def test_unknown_sampling_method_is_clear():
    with pytest.raises(InvalidOption, match="use histogram or gaussian"):
        fit_distribution(_relu_features(), "uniform")
