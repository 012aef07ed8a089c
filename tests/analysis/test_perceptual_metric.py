"""The perceptual metric: the normalized distance in a named comparator's features, in evaluate, compare and analyze
and on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from repinv.analysis.compare import compare
from repinv.analysis.metrics import ErrorScale, MethodScores
from repinv.analysis.studies import analyze
from repinv.cli import cli
from repinv.errors import InvalidOption
from repinv.losses import Comparator
from repinv.training.config import make_config
from repinv.training.loop import train


def test_the_metric_is_zero_when_exact_and_scaled_by_the_pairwise_distance() -> None:
    torch.manual_seed(0)
    images = torch.rand(6, 3, 16, 16)
    comparator = Comparator("hog", cell_size=4)
    original = comparator(images)
    scale, exact, other = ErrorScale(), MethodScores(), MethodScores()
    scale.add(images, None, original)
    exact.add(images, images, perceptual=(original, comparator(images)))
    shifted = images.roll(1, 0)  # every reconstruction is another test image
    other.add(images, shifted, perceptual=(original, comparator(shifted)))
    assert scale.summarize(exact)["perceptual_error"] == 0.0
    pairs = [(i, j) for i in range(6) for j in range(6) if i != j]
    mean_pairwise = sum((original[i] - original[j]).pow(2).sum().item() for i, j in pairs) / len(pairs)
    expected = sum((original[i] - original[(i - 1) % 6]).pow(2).sum().item() for i in range(6)) / 6 / mean_pairwise
    assert scale.summarize(other)["perceptual_error"] == pytest.approx(expected, rel=1e-3)  # reference in float16


def test_a_comparator_is_named_with_what_changes_its_values() -> None:
    name = Comparator("hog", cell_size=4).name
    assert name.startswith("hog (") and "cell_size=4" in name and name != Comparator("hog").name
    with pytest.raises(InvalidOption, match="comparator sift is not differentiable"):
        Comparator("sift")


@pytest.fixture(scope="module")
def hog_run(photo_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = make_config(rep="hog", image_size=32, width=0.05, steps=2, batch_size=4, workers=0,
                         data=[str(photo_folder)], device="cpu")
    return train(config, tmp_path_factory.mktemp("runs") / "hog", show_progress=False).run


def test_evaluate_compare_and_analyze_report_it_by_name(hog_run: Path, photo_folder: Path, tmp_path: Path) -> None:
    comparator = Comparator("hog", cell_size=4)
    compared = compare(str(photo_folder), [f"decoder:{hog_run}", f"mean:{hog_run}"], comparator=comparator)
    assert compared["comparator"] == comparator.name
    assert all(0 < row["perceptual_error"] < 5 for row in compared["methods"])
    studied = analyze([hog_run], str(photo_folder), ["binarize"], comparator=comparator)
    rows = studied["checkpoints"][0]["results"]
    assert studied["comparator"] == comparator.name and rows["binarize"]["perceptual_error"] > 0
    result = CliRunner(env={"COLUMNS": "150"}).invoke(cli, [
        "evaluate", "--checkpoint", str(hog_run), "--data", str(photo_folder), "--workers", "0",
        "--perceptual", "hog", "--perceptual-opt", "cell_size=4", "--out", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    assert "perceptual error in the features of hog (" in result.output and "perceptual" in result.output
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["comparator"] == comparator.name
    assert saved["decoder"]["perceptual_error"] == pytest.approx(compared["methods"][0]["perceptual_error"])


def test_perceptual_options_without_a_comparator_are_refused(hog_run: Path, photo_folder: Path) -> None:
    result = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(hog_run), "--data", str(photo_folder),
                                      "--perceptual-opt", "cell_size=4"])
    assert result.exit_code != 0 and "--perceptual-opt needs --perceptual REP" in result.output
