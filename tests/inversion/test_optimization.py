"""Optimization-based inversion (Mahendran & Vedaldi): it lowers the feature error, batches independently, refuses
non-differentiable representations, and `repinv invert --method optimize` works from the command line."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from repinv import create_representation
from repinv.cli import cli
from repinv.errors import InvalidOption, NotDifferentiable
from repinv.inversion.optimization import (
    OptimizationInverter,
    OptimizeSettings,
    check_differentiable,
    optimize_images,
    total_variation,
)


@pytest.fixture(scope="module")
def hog():
    return create_representation("hog")


def test_feature_error_decreases_monotonically_on_average(photos, hog):
    images = photos((16, 16))
    result = optimize_images(hog, hog(images), (16, 16), OptimizeSettings(steps=120))
    losses = result.feature_loss
    assert len(losses) == 120 and len(result.objective) == 120
    windows = [sum(losses[i:i + 20]) / 20 for i in range(0, 120, 20)]
    assert all(later < earlier for earlier, later in zip(windows, windows[1:])), windows
    assert losses[-1] < 0.4 * losses[0], (losses[0], losses[-1])
    # the objective (feature term plus the priors) falls too
    assert sum(result.objective[-20:]) < sum(result.objective[:20])


def test_images_are_optimized_independently_in_a_batch(photos, hog):
    images = photos((16, 16))
    start = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    settings = OptimizeSettings(steps=15)
    together = optimize_images(hog, hog(images), (16, 16), settings, initial=start).images
    alone = optimize_images(hog, hog(images[1:2]), (16, 16), settings, initial=start[1:2]).images
    torch.testing.assert_close(together[1:2], alone, rtol=1e-4, atol=1e-5)


def test_optimization_is_seeded(photos, hog):
    features = hog(photos((16, 16)))
    first = optimize_images(hog, features, (16, 16), OptimizeSettings(steps=3, seed=4)).images
    again = optimize_images(hog, features, (16, 16), OptimizeSettings(steps=3, seed=4)).images
    other = optimize_images(hog, features, (16, 16), OptimizeSettings(steps=3, seed=5)).images
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_jitter_and_unclipped_runs_stay_finite(photos, hog):
    features = hog(photos((16, 16)))
    for settings in (OptimizeSettings(steps=10, jitter=2), OptimizeSettings(steps=10, clip=False, beta=1.0)):
        assert torch.isfinite(optimize_images(hog, features, (16, 16), settings).images).all()


def test_clip_keeps_the_bounded_range(photos, hog):
    images = optimize_images(hog, hog(photos((16, 16))), (16, 16), OptimizeSettings(steps=5, lr=1.0)).images
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    assert ((images - mean).abs() <= 2 * 80 / 255 + 1e-6).all()


def test_defaults_and_schedule_are_the_documented_ones():
    settings = OptimizeSettings()
    assert (settings.alpha, settings.beta, settings.momentum, settings.steps) == (6.0, 2.0, 0.9, 800)
    assert settings.bound == pytest.approx(80 / 255) and settings.v == pytest.approx(80 / 255 / 6.5)
    rates = [settings.learning_rate(i) for i in (0, 199, 200, 399, 400, 600, 799)]
    assert rates == pytest.approx([5e-4, 5e-4, 5e-5, 5e-5, 5e-6, 5e-7, 5e-7])


def test_total_variation_matches_its_formula():
    x = torch.tensor([[[[0.0, 1.0], [3.0, 7.0]]]])
    # forward differences: (0,0): dx 1, dy 3; (0,1): dx 0, dy 6; (1,0): dx 4, dy 0; (1,1): 0
    assert total_variation(x, 2.0).item() == pytest.approx(1 + 9 + 36 + 16)
    assert total_variation(x, 1.0).item() == pytest.approx(10 ** 0.5 + 6 + 4, rel=1e-4)


@pytest.mark.parametrize("options, fragment", [
    ({"step": 3}, "unknown optimize option step; valid options: steps, "),
    ({"lr": -1}, "optimize option lr must be a positive number, got -1"),
    ({"momentum": 1.5}, r"momentum must be a number in \[0, 1\), got 1.5"),
    ({"momentum": "abc"}, r"momentum must be a number in \[0, 1\), got 'abc'"),
    ({"tv_bound": "abc"}, "tv_bound must be a positive number or null, got 'abc'"),
    ({"steps": 2.5}, "steps must be a positive integer, got 2.5"),
    ({"lr": float("nan")}, "lr must be a positive number, got nan"),
    ({"clip": "yes"}, "clip must be true or false, got 'yes'")])
def test_bad_settings_are_refused(options, fragment):
    with pytest.raises(InvalidOption, match=fragment):
        OptimizeSettings.from_options(options)


def test_settings_take_their_fields_types():
    settings = OptimizeSettings.from_options({"steps": 200.0, "lr": 1, "tv_bound": 2})
    assert (settings.steps, settings.lr, settings.tv_bound) == (200, 1.0, 2.0)
    assert type(settings.steps) is int and type(settings.lr) is float


def test_non_differentiable_representations_are_refused():
    lbp = create_representation("lbp")
    with pytest.raises(NotDifferentiable, match="lbp is not"):
        check_differentiable(lbp)
    with pytest.raises(NotDifferentiable, match="train a decoder"):
        OptimizationInverter(lbp, 16, device="cpu")
    with pytest.raises(NotDifferentiable):
        optimize_images(lbp, torch.zeros(1, *lbp.spec((16, 16)).shape), (16, 16))


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_refuses_a_non_differentiable_rep_with_one_line(photo_folder, tmp_path):
    image = str(sorted(photo_folder.glob("*.png"))[0])
    result = _invoke("invert", "--method", "optimize", "--rep", "lbp", image, "--out", str(tmp_path / "o"))
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and "differentiable" in lines[0] and "lbp" in lines[0]


def test_cli_inverts_images_by_optimization(photo_folder, tmp_path):
    images = [str(p) for p in sorted(photo_folder.glob("*.png"))[:2]]
    out = tmp_path / "recon"
    result = _invoke("invert", "--method", "optimize", "--rep", "hog", "--image-size", "16", "--opt", "steps=3",
                     *images, "--out", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.png")) == ["photo-00.png", "photo-01.png"]


def test_cli_method_needs_its_inputs(photo_folder, tmp_path):
    image = str(sorted(photo_folder.glob("*.png"))[0])
    missing = _invoke("invert", "--method", "optimize", image, "--out", str(tmp_path / "o"))
    assert missing.exit_code != 0 and "--checkpoint RUN" in missing.output and "--rep REP" in missing.output
    stray = _invoke("invert", "--checkpoint", str(tmp_path), "--rep", "hog", image, "--out", str(tmp_path / "o"))
    assert stray.exit_code != 0 and "go with --method optimize" in stray.output
