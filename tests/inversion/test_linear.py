"""The linear (ridge) baseline: closed form against lstsq, streamed against one-shot, λ choice, save/load."""

from __future__ import annotations

import pytest
import torch

from repinv.errors import CheckpointError, DataError, InvalidOption, ShapeError
from repinv.inversion.linear import (
    RIDGE_GRID,
    LinearInverter,
    RidgeStatistics,
    _choose_ridge,
    fit_linear,
    load_linear,
    solve_ridge,
)
from repinv.inversion.mean import load_mean_image


def _problem(n: int = 300, d: int = 12, p: int = 7, noise: float = 0.01, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3, d, dtype=torch.float64)
    w = torch.randn(d, p, generator=g, dtype=torch.float64)
    b = torch.randn(p, generator=g, dtype=torch.float64)
    y = z @ w + b + noise * torch.randn(n, p, generator=g, dtype=torch.float64)
    return z, y, w, b


def _stats(z: torch.Tensor, y: torch.Tensor, chunk: int | None = None) -> RidgeStatistics:
    stats = RidgeStatistics(z.shape[1], y.shape[1])
    for start in range(0, len(z), chunk or len(z)):
        stats.add(z[start:start + (chunk or len(z))], y[start:start + (chunk or len(z))])
    return stats


def test_tiny_ridge_matches_least_squares_with_intercept():
    z, y, w_true, b_true = _problem()
    weight, bias, lam = solve_ridge(_stats(z, y), relative=1e-12)
    design = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution
    torch.testing.assert_close(weight, solution[:-1], rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(bias, solution[-1], rtol=1e-7, atol=1e-8)
    assert (weight - w_true).abs().max() < 0.05 and (bias - b_true).abs().max() < 0.05  # the noise is small
    assert lam > 0


def test_ridge_matches_the_closed_form_on_centred_data():
    z, y, _, _ = _problem(n=40, d=30, noise=0.5)
    weight, bias, lam = solve_ridge(_stats(z, y), relative=0.3)
    zc, yc = z - z.mean(0), y - y.mean(0)
    assert lam == pytest.approx(0.3 * (zc * zc).sum(0).mean().item())
    expected = torch.linalg.solve(zc.T @ zc + lam * torch.eye(z.shape[1], dtype=z.dtype), zc.T @ yc)
    torch.testing.assert_close(weight, expected)
    torch.testing.assert_close(bias, y.mean(0) - z.mean(0) @ expected)
    # ridge shrinks: the weights are smaller than least squares'
    assert weight.norm() < solve_ridge(_stats(z, y), relative=1e-12)[0].norm()


def test_streamed_statistics_equal_one_shot():
    z, y, _, _ = _problem(n=257)
    streamed, whole = _stats(z, y, chunk=16), _stats(z, y)
    for a, b in [(streamed.zz, whole.zz), (streamed.zy, whole.zy), (streamed.z_sum, whole.z_sum)]:
        torch.testing.assert_close(a, b)
    assert streamed.count == whole.count == 257
    torch.testing.assert_close(solve_ridge(streamed, 0.01)[0], solve_ridge(whole, 0.01)[0])
    merged = _stats(z[:100], y[:100]).merged(_stats(z[100:], y[100:]))
    torch.testing.assert_close(solve_ridge(merged, 0.01)[0], solve_ridge(whole, 0.01)[0])


def test_held_out_errors_equal_direct_evaluation():
    z, y, _, _ = _problem(n=200, d=40, noise=1.0)
    train, held = _stats(z[:150], y[:150]), _stats(z[150:], y[150:])
    best, errors = _choose_ridge(train, held)
    for r in (RIDGE_GRID[0], 0.1, RIDGE_GRID[-1]):
        weight, bias, _ = solve_ridge(train, r)
        direct = ((z[150:] @ weight + bias - y[150:]) ** 2).sum(1).mean().item()
        assert errors[f"{r:.3g}"] == pytest.approx(direct, rel=1e-6)
    assert errors[f"{best:.3g}"] == min(errors.values())


def test_fit_save_load_round_trip(tmp_path, photo_folder):
    run = tmp_path / "linear"
    model = fit_linear("hog", str(photo_folder), run, image_size=16, ridge=0.01, device="cpu")
    assert (run / "linear.safetensors").is_file() and (run / "mean_image.safetensors").is_file()
    loaded = load_linear(run, "cpu")
    images = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(loaded.reconstruct(images), model.reconstruct(images))
    assert loaded.metadata["ridge"]["relative"] == 0.01 and loaded.metadata["images"] == 12
    assert loaded.reconstruct(images).shape == (3, 3, 16, 16)
    torch.testing.assert_close(load_mean_image(run, "cpu").mean_image, model.mean_image)


def test_automatic_ridge_holds_images_out(tmp_path, photo_folder):
    model = fit_linear("hog", [str(photo_folder)] * 2, None, image_size=16, device="cpu")  # 24 images
    choice = model.metadata["ridge"]
    assert choice["held_out_images"] == 2 and len(choice["held_out_mse"]) == len(RIDGE_GRID)
    assert choice["relative"] in RIDGE_GRID and model.metadata["images"] == 24


def test_hashed_features_round_trip_and_equal_manual_projection(tmp_path, photo_folder):
    run = tmp_path / "hashed"
    model = fit_linear("hog", str(photo_folder), run, image_size=16, ridge=0.1, projection=32, device="cpu")
    assert model.weight.shape == (32, 3 * 16 * 16)
    features = torch.rand(2, *model.spec.shape)
    manual = torch.zeros(2, 32)
    for i, (bucket, sign) in enumerate(zip(model.hash_index.tolist(), model.hash_sign.tolist())):
        manual[:, bucket] += sign * features.flatten(1)[:, i]
    torch.testing.assert_close(model.project(features), manual)
    torch.testing.assert_close(load_linear(run, "cpu").decode(features), model.decode(features))


def test_bad_input_is_refused(tmp_path, photo_folder):
    with pytest.raises(InvalidOption, match="ridge"):
        fit_linear("hog", str(photo_folder), None, image_size=16, ridge=-1, device="cpu")
    with pytest.raises(DataError, match="at least 2"):
        fit_linear("hog", str(photo_folder), None, image_size=16, limit=1, device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        load_linear(tmp_path / "nothing")
    decoder_run = tmp_path / "decoder"
    decoder_run.mkdir()
    (decoder_run / "decoder.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="decoder:"):
        load_linear(decoder_run)


def test_linear_inverter_refuses_mismatched_weights():
    from repinv import create_representation

    with pytest.raises(ShapeError, match="linear weight"):
        LinearInverter(create_representation("hog"), (16, 16), torch.zeros(5, 768), torch.zeros(768))


def test_cli_fits_and_inverts_with_the_linear_baseline(tmp_path, photo_folder):
    from click.testing import CliRunner

    from repinv.cli import cli

    run = tmp_path / "linear"
    fitted = CliRunner().invoke(cli, ["fit-linear", "--rep", "hog", "--data", str(photo_folder), "--image-size", "16",
                                      "--ridge", "0.01", "--workers", "0", "--device", "cpu", "--out", str(run)])
    assert fitted.exit_code == 0, fitted.output
    assert "fitted on 12 images" in fitted.output
    image = str(sorted(photo_folder.glob("*.png"))[0])
    inverted = CliRunner().invoke(cli, ["invert", "--method", "linear", "--checkpoint", str(run), image, "--out",
                                        str(tmp_path / "recon"), "--device", "cpu"])
    assert inverted.exit_code == 0, inverted.output
    assert (tmp_path / "recon" / "photo-00.png").is_file()
    bad = CliRunner().invoke(cli, ["fit-linear", "--rep", "hog", "--data", str(photo_folder), "--ridge", "lots",
                                   "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "neither auto nor a number" in bad.output
