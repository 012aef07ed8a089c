"""`repinv compare`: every method on the same images, one table (JSON, CSV), one grid with a column per method."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import repinv
from repinv.analysis.compare import compare
from repinv.cli import cli
from repinv.errors import InvalidOption
from repinv.inversion.linear import fit_linear

METRIC_KEYS = {"normalized_error", "feature_error", "psnr", "ssim", "seconds_per_image"}


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, photo_folder):
    root = tmp_path_factory.mktemp("compare-runs")
    result = _invoke("train", "--rep", "hog", "--data", str(photo_folder), "--image-size", "32", "--width", "0.05",
                     "--steps", "2", "--batch-size", "4", "--workers", "0", "--out", str(root / "decoder"), "--quiet")
    assert result.exit_code == 0, result.output
    fit_linear("hog", str(photo_folder), root / "linear", image_size=32, device="cpu")
    return root


def test_compare_writes_json_csv_and_a_grid_with_a_column_per_method(runs, tmp_path):
    out = tmp_path / "cmp"
    methods = [f"decoder:{runs / 'decoder'}", "optimize", f"linear:{runs / 'linear'}", "mean"]
    result = _invoke("compare", "--data", "builtin:test", *[a for m in methods for a in ("--method", m)],
                     "--opt", "steps=30", "--workers", "0", "--device", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "compare.json").read_text())
    assert saved["images"] == 2 and saved["representation"]["name"] == "hog" and saved["image_size"] == [32, 32]
    assert [row["method"] for row in saved["methods"]] == methods
    for row in saved["methods"]:
        assert set(row) >= METRIC_KEYS and row["seconds_per_image"] >= 0
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [r["method"] for r in rows] == methods
    assert float(rows[0]["normalized_error"]) == pytest.approx(saved["methods"][0]["normalized_error"])
    with Image.open(out / "compare.png") as grid:
        # 2 test images in rows; the image column plus one per method; 32-pixel tiles enlarged 3x for the labels,
        # 2-pixel padding, one line of labels on top
        assert grid.width == 2 + (1 + len(methods)) * 98 and grid.height == 13 + 4 + 2 + 2 * 98
    by_method = {row["method"]: row for row in saved["methods"]}
    # optimization minimizes the feature error directly; a 2-step decoder does not
    assert by_method["optimize"]["feature_error"] < by_method[methods[0]]["feature_error"]
    # the optimization is far slower per image than a decoder, measured in the same run
    assert by_method["optimize"]["seconds_per_image"] > by_method[methods[0]]["seconds_per_image"]


def test_mean_takes_the_first_runs_mean_image(runs):
    result = compare("builtin:test", [f"linear:{runs / 'linear'}", "mean", f"mean:{runs / 'decoder'}"],
                     device="cpu")
    linear, mean_of_linear, mean_of_decoder = result["methods"]
    assert mean_of_linear["normalized_error"] != mean_of_decoder["normalized_error"]  # different training means
    assert result["files"] == {}


@pytest.mark.parametrize("methods, fragment", [
    (["nosuch"], "unknown method 'nosuch'"),
    (["decoder"], "decoder:RUN"),
    (["mean"], "mean needs a run"),
    (["optimize"], "give --rep"),
    (["optimize", "optimize"], "given twice"),
])
def test_bad_methods_are_refused(methods, fragment):
    with pytest.raises(InvalidOption, match=fragment):
        compare("builtin:test", methods, device="cpu")


def test_methods_must_invert_one_representation(runs):
    with pytest.raises(InvalidOption, match="differs from the representation"):
        compare("builtin:test", [f"decoder:{runs / 'decoder'}"], rep="hog", rep_options={"cell_size": 4},
                device="cpu")
    with pytest.raises(InvalidOption, match="--image-size 16 differs"):
        compare("builtin:test", [f"decoder:{runs / 'decoder'}"], image_size=16, device="cpu")


def test_cli_bad_method_is_one_line(tmp_path):
    result = _invoke("compare", "--data", "builtin:test", "--method", "optimize", "--rep", "lbp", "--out",
                     str(tmp_path / "c"), "--device", "cpu")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and "differentiable" in lines[0], result.output


@pytest.mark.slow
def test_hog_ranking_on_tiny_imagenet(tiny_imagenet, tmp_path):
    """decoder < linear < mean in normalized error, on held-out Tiny ImageNet images (HOG, 64x64).

    The decoder is trained here for 4,000 steps of the hog-64-conv recipe on one shard (a step count, not a time
    budget, so a busy machine gives the same decoder; ~0.47 in docs/benchmarks.md), the linear baseline on 5,000
    images of the same shard (~0.53).
    """
    from repinv.training.config import make_config
    from repinv.training.loop import train

    shard = str(tiny_imagenet / "train-000.tar")
    config = make_config("hog-64-conv", data=[shard], steps=4000, device="cpu", sample_every=10**6,
                         checkpoint_every=10**6, val_every=10**6)
    train(config, tmp_path / "decoder", show_progress=False)
    fit_linear("hog", shard, tmp_path / "linear", limit=5000, device="cpu")
    result = compare(str(tiny_imagenet / "val-000.tar"), [f"decoder:{tmp_path / 'decoder'}",
                                                          f"linear:{tmp_path / 'linear'}", "mean"],
                     limit=256, device="cpu")
    errors = [row["normalized_error"] for row in result["methods"]]
    print("decoder, linear, mean normalized error:", errors)
    assert errors[0] < errors[1] < errors[2], errors



def test_a_fine_tuned_run_decodes_its_own_encoders_features(tiny_encoder, photo_folder, tmp_path):
    settings = dict(rep=tiny_encoder, data=[str(photo_folder)], image_size=32, width=0.05, steps=3, batch_size=4,
                    lr=0.05, workers=0, device="cpu")
    repinv.train(repinv.make_config(**settings), tmp_path / "frozen", show_progress=False)
    repinv.train(repinv.make_config(**settings, finetune_encoder=True), tmp_path / "tuned", show_progress=False)
    tuned = repinv.load(tmp_path / "tuned", "cpu")
    frozen = repinv.load(tmp_path / "frozen", "cpu")
    assert not torch.equal(tuned.representation.model[0].weight, frozen.representation.model[0].weight)
    result = compare(str(photo_folder), [f"decoder:{tmp_path / 'frozen'}", f"decoder:{tmp_path / 'tuned'}"],
                     device="cpu")
    # each decoder scores as it does alone, on the features it was trained on
    for run, row in zip((frozen, tuned), result["methods"]):
        alone = repinv.evaluate(run, str(photo_folder))["decoder"]
        assert row["normalized_error"] == pytest.approx(alone["normalized_error"], rel=1e-5)
