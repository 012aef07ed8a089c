"""Feature studies: `repinv analyze` and repinv.studies / repinv.sampling on tiny runs, and on a real HOG run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import repinv
from repinv import hookimpl
from repinv.analysis.random_features import sample_images
from repinv.analysis.studies import REFERENCE, analyze, interpolate
from repinv.cli import cli
from repinv.inversion.decoder import load
from repinv.training.config import make_config
from repinv.training.loop import train


def _invoke(*args: str):
    return CliRunner(env={"COLUMNS": "120"}).invoke(cli, list(args), catch_exceptions=False)  # room for every metric


def _train(data, out, steps=2, **overrides):
    settings = dict(rep="hog", image_size=32, width=0.05, steps=steps, batch_size=4, workers=0, data=[str(data)],
                    sample_every=10**6, checkpoint_every=10**6, device="cpu")
    settings.update(overrides)
    return train(make_config(**settings), out, show_progress=False).run


@pytest.fixture(scope="module")
def runs(tmp_path_factory, photo_folder):
    """Two tiny HOG runs of different cell sizes: stand-ins for two layers of one network."""
    root = tmp_path_factory.mktemp("study-runs")
    return [_train(photo_folder, root / "cell8"), _train(photo_folder, root / "cell4", rep_options={"cell_size": 4})]


def _png_size(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.format, image.size


def test_analyze_api_is_json_able_and_consistent(runs, photo_folder):
    inverter = load(runs[0], "cpu")
    total = inverter.spec.numel
    result = analyze([inverter], str(photo_folder), ["binarize", "dropout:0", f"keep-top:{total}", "dropout"],
                     batch_size=5, seed=1)
    json.dumps(result)
    entry = result["checkpoints"][0]
    assert entry["images"] == 12 and entry["representation"] == "hog" and entry["label"] == "hog"
    rows = entry["results"]
    assert list(rows) == [REFERENCE, "binarize", "dropout:0", f"keep-top:{total}", "dropout"]
    # perturbations that change nothing score exactly like the reference row
    for identity in ("dropout:0", f"keep-top:{total}"):
        assert rows[identity]["normalized_error"] == pytest.approx(rows[REFERENCE]["normalized_error"], rel=1e-6)
        assert rows[identity]["feature_change"] == pytest.approx(0, abs=1e-6)
    assert rows["dropout"]["feature_change"] > 0.3
    assert set(entry["baseline"]) == {"normalized_error", "psnr", "ssim", "colour_error", "layout_error"}
    # the batch size changes nothing: each image has its own random stream
    again = analyze([inverter], str(photo_folder), ["dropout"], batch_size=12, seed=1)
    assert again["checkpoints"][0]["results"]["dropout"] == pytest.approx(rows["dropout"])


def test_cli_writes_table_json_and_grid(runs, photo_folder, tmp_path):
    out = tmp_path / "study"
    result = _invoke("analyze", "--checkpoint", str(runs[0]), "--data", str(photo_folder), "--perturb", "binarize",
                     "--perturb", "dropout", "--device", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "normalized error" in result.output and "binarize" in result.output and "mean image" in result.output
    saved = json.loads((out / "perturbations.json").read_text())
    assert saved["perturbations"] == ["binarize", "dropout"]
    assert set(saved["checkpoints"][0]["results"]) == {REFERENCE, "binarize", "dropout"}
    # 8 rows, 4 columns (original, unperturbed, binarize, dropout); 32-pixel images are enlarged 3x for the labels
    kind, (width, height) = _png_size(out / "perturbations-hog.png")
    assert kind == "PNG" and width == 4 * (96 + 2) + 2 and height > 8 * (96 + 2) + 2
    assert not (out / "perturbations-per-layer.png").exists()  # one checkpoint: no per-layer plot


def test_cli_default_output_folder_and_default_perturbations(runs):
    result = _invoke("analyze", "--checkpoint", str(runs[0]), "--device", "cpu")
    assert result.exit_code == 0, result.output
    saved = json.loads((runs[0] / "analysis" / "perturbations.json").read_text())
    assert saved["data"] == ["builtin:test"] and saved["perturbations"] == ["binarize", "dropout"]


def test_several_checkpoints_give_a_per_layer_plot(runs, photo_folder, tmp_path):
    out = tmp_path / "layers"
    result = _invoke("analyze", *[a for run in runs for a in ("--checkpoint", str(run))], "--data",
                     str(photo_folder), "--perturb", "binarize", "--limit", "6", "--device", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output
    kind, (width, height) = _png_size(out / "perturbations-per-layer.png")
    assert kind == "PNG" and width > 300 and height > 200
    saved = json.loads((out / "perturbations.json").read_text())
    assert [c["label"] for c in saved["checkpoints"]] == ["hog (cell8)", "hog (cell4)"]
    assert all(c["images"] == 6 for c in saved["checkpoints"])
    assert (out / "perturbations-hog-cell8.png").is_file() and (out / "perturbations-hog-cell4.png").is_file()


def test_interpolation_strip_and_sample_grid_have_the_right_size(runs, photo_folder, tmp_path):
    a, b = sorted(str(p) for p in photo_folder.iterdir())[:2]
    out = tmp_path / "views"
    result = _invoke("analyze", "--checkpoint", str(runs[0]), "--data", str(photo_folder), "--interpolate", a, b,
                     "--steps", "5", "--sample", "histogram", "--n", "10", "--alpha", "2", "--device", "cpu",
                     "--out", str(out))
    assert result.exit_code == 0, result.output
    assert not (out / "perturbations.json").exists()  # only what was asked for
    # one row: image a, 5 reconstructions, image b; 2-pixel padding
    assert _png_size(out / "interpolation-hog.png") == ("PNG", (7 * (32 + 2) + 2, 32 + 4))
    # 10 samples, 8 per row
    assert _png_size(out / "samples-histogram-hog.png") == ("PNG", (8 * (32 + 2) + 2, 2 * (32 + 2) + 2))
    assert "sparsity" in result.output
    # each PNG has a JSON beside it saying what it shows
    strip = json.loads((out / "interpolation-hog.json").read_text())
    assert strip["interpolation"] == [a, b] and strip["steps"] == 5 and strip["strip"] == "interpolation-hog.png"
    samples = json.loads((out / "samples-histogram-hog.json").read_text())
    assert samples["n"] == 10 and samples["alpha"] == 2 and samples["grid"] == "samples-histogram-hog.png"
    assert samples["representation"]["name"] == "hog" and 0 <= samples["sample_sparsity"] <= 1


def test_interpolation_endpoints_are_the_reconstructions(runs, photo_folder):
    inverter = load(runs[0], "cpu")
    a, b = sorted(photo_folder.iterdir())[:2]
    frames = interpolate(inverter, a, b, steps=4)
    ends = inverter.reconstruct(repinv.load_images([a, b], inverter.image_size)).clamp(0, 1)
    assert frames.shape == (4, 3, 32, 32)
    assert torch.allclose(frames[0], ends[0], atol=1e-5) and torch.allclose(frames[-1], ends[1], atol=1e-5)


def test_sample_images_matches_the_sparsity_of_real_features(runs, photo_folder):
    inverter = load(runs[0], "cpu")
    for method in ("histogram", "gaussian"):
        images, summary = sample_images(inverter, str(photo_folder), method, 6, seed=3)
        assert images.shape == (6, 3, 32, 32) and images.min() >= 0 and images.max() <= 1
        assert summary["images"] == 12
        assert abs(summary["sample_sparsity"] - summary["real_sparsity"]) <= 0.02
        json.dumps(summary)


class NegatePlugin:
    @hookimpl
    def register_perturbations(self, register):
        register("negate", lambda features, arg, *, generator: -features, description="flip every sign (test)")


@pytest.fixture
def negate_plugin():
    name = repinv.register_plugin(NegatePlugin(), name="negate-plugin")
    yield name
    repinv.unregister_plugin(name)


def test_a_plugin_perturbation_is_listed_and_runs(negate_plugin, runs, photo_folder, tmp_path):
    listing = _invoke("analyze", "--list")
    assert listing.exit_code == 0
    assert "negate" in listing.output and "flip every sign" in listing.output and "negate-plugin" in listing.output
    assert "drop-least+binarize" in listing.output and "keep-top" in listing.output
    result = _invoke("analyze", "--checkpoint", str(runs[0]), "--data", str(photo_folder), "--perturb", "negate",
                     "--device", "cpu", "--out", str(tmp_path / "neg"))
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "neg" / "perturbations.json").read_text())["checkpoints"][0]["results"]
    assert rows["negate"]["feature_change"] == pytest.approx(2.0)  # ‖−Φ − Φ‖ = 2‖Φ‖


@pytest.mark.parametrize("args, fragment", [
    (["--perturb", "binarise"], "unknown perturbation 'binarise'; available: binarize"),
    (["--perturb", "dropout:2"], "perturbation dropout option RATE must be a number in [0, 1), got 2"),
    (["--perturb", "keep-top"], "keep-top needs K"),
])
def test_bad_perturbations_give_one_line(args, fragment, runs):
    result = _invoke("analyze", "--checkpoint", str(runs[0]), "--device", "cpu", *args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and fragment in lines[0], result.output


def test_checkpoints_are_required_and_checked_before_any_work(runs, tmp_path):
    assert "--checkpoint RUN" in _invoke("analyze").output
    several = _invoke("analyze", "--checkpoint", str(runs[0]), "--checkpoint", str(runs[1]))
    assert several.exit_code != 0 and "--out DIR" in several.output
    missing = _invoke("analyze", "--checkpoint", str(runs[0]), "--checkpoint", str(tmp_path / "nope"), "--out",
                      str(tmp_path / "o"))
    assert missing.exit_code != 0 and "nope" in missing.output and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_hog_on_tiny_imagenet_unperturbed_row_is_lowest(tiny_imagenet, tmp_path):
    """A HOG decoder trained briefly on real photos: perturbed features reconstruct worse than the originals."""
    # A fixed number of steps, not a time budget, so the outcome does not depend on how busy the machine is.
    config = make_config("hog-64-conv", data=[str(tiny_imagenet / "train-000.tar")], width=0.1, steps=150, device="cpu",
                         sample_every=10**6, checkpoint_every=10**6, val_every=10**6)
    run = train(config, tmp_path / "hog", show_progress=False).run
    out = tmp_path / "study"
    result = _invoke("analyze", "--checkpoint", str(run), "--data", str(tiny_imagenet / "val-000.tar"), "--limit",
                     "64", "--perturb", "binarize", "--perturb", "dropout", "--device", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "unperturbed" in result.output and "binarize" in result.output and "dropout" in result.output
    rows = json.loads((out / "perturbations.json").read_text())["checkpoints"][0]["results"]
    errors = {name: scores["normalized_error"] for name, scores in rows.items()}
    assert all(math.isfinite(e) for e in errors.values())
    assert errors[REFERENCE] < min(errors["binarize"], errors["dropout"]), errors
    assert _png_size(out / "perturbations-hog.png")[0] == "PNG"
