"""Hostile input on the command line: non-finite, mis-shaped or mis-typed features, an image smaller than a cell,
option values of the wrong type for every command. Each gives one `Error:` line and exit status 1, writes nothing
and changes no file the user had."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from repinv.cli import cli

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "scoring"
RUN = FIXTURE / "decoder"  # a HOG decoder at 16x16: features (31, 2, 2)


def _one_line_error(args: list[str], *fragments: str) -> str:
    result = CliRunner().invoke(cli, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def untouched():
    """The committed runs are never changed by a failing command."""
    before = _digest(FIXTURE)
    yield
    assert _digest(FIXTURE) == before


@pytest.mark.parametrize(("value", "items"), [(float("nan"), "item 0, 2"), (float("inf"), "item 0, 2"),
                                              (float("-inf"), "item 0, 2")])
def test_non_finite_features_are_refused_naming_the_items(tmp_path, untouched, value, items):
    features = torch.rand(3, 31, 2, 2)
    features[0, 3, 1, 0] = value
    features[2, 0, 0, 0] = value
    save_file({"features": features}, str(tmp_path / "f.safetensors"))
    _one_line_error(["invert", "--checkpoint", str(RUN), "--features", str(tmp_path / "f.safetensors"), "--out",
                     str(tmp_path / "out")], "NaN or infinite values in 2 of 3 items", items)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("features", "fragment"), [
    (torch.rand(2, 31, 3, 3), "must have shape (B, 31, 2, 2), got (2, 31, 3, 3)"),
    (torch.rand(2, 124), "must have shape (B, 31, 2, 2), got (2, 124)"),
    (torch.ones(2, 31, 2, 2, dtype=torch.int32), "must be floating point, got torch.int32"),
])
def test_features_of_the_wrong_shape_or_dtype_are_refused(tmp_path, untouched, features, fragment):
    save_file({"features": features}, str(tmp_path / "f.safetensors"))
    _one_line_error(["invert", "--checkpoint", str(RUN), "--features", str(tmp_path / "f.safetensors"), "--out",
                     str(tmp_path / "out")], fragment)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def hog_makes_nan(monkeypatch):
    """HOG computes NaN features for the second image of every batch (as a broken representation would)."""
    from repinv_hog.hog import HOG

    real = HOG.forward

    def broken(self, images):
        features = real(self, images)
        if features.shape[0] > 1:
            features[1] = float("nan")
        return features

    monkeypatch.setattr(HOG, "forward", broken)


def test_non_finite_features_from_a_representation_stop_analyze(tmp_path, untouched, hog_makes_nan):
    _one_line_error(["analyze", "--checkpoint", str(RUN), "--data", "builtin:all", "--batch-size", "4", "--device",
                     "cpu", "--out", str(tmp_path / "study")], "hog features of the test images",
                    "NaN or infinite values in 1 of 4 items (item 1)")
    assert not (tmp_path / "study" / "perturbations.json").exists()


def test_non_finite_features_from_a_representation_stop_compare(tmp_path, untouched, hog_makes_nan):
    _one_line_error(["compare", "--data", "builtin:all", "--method", f"decoder:{RUN}", "--method", "mean",
                     "--batch-size", "4", "--device", "cpu", "--workers", "0", "--out", str(tmp_path / "cmp")],
                    "NaN or infinite values in 1 of 4 items (item 1)")
    assert not (tmp_path / "cmp").exists()


def test_an_image_smaller_than_a_cell_is_refused(tmp_path):
    _one_line_error(["train", "--rep", "lbp", "--image-size", "8", "--data", "builtin", "--steps", "1", "--out",
                     str(tmp_path / "run"), "--quiet"], "lbp with cell_size=16 needs images of at least 16x16")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [
    ["train", "--rep", "hog", "--data", "builtin", "--steps", "many"],
    ["train", "--rep", "hog", "--data", "builtin", "--lr", "fast"],
    ["train", "--rep", "hog", "--data", "builtin", "--scale", "1", "big"],
    ["train", "--rep", "hog", "--data", "builtin", "--rep-opt", "cell_size=[8]"],
    ["train", "--rep", "hog", "--data", "builtin", "--decoder-opt", "width=wide"],
    ["features", "--rep", "hog", "--data", "builtin", "--out", "{tmp}/c", "--batch-size", "x"],
    ["features", "--rep", "hog", "--data", "builtin", "--out", "{tmp}/c", "--shard-size", "0"],
    ["evaluate", "--checkpoint", str(RUN), "--limit", "ten"],
    ["evaluate", "--checkpoint", str(RUN), "--limit", "1"],
    ["analyze", "--checkpoint", str(RUN), "--steps", "eight", "--interpolate", "a.png", "b.png"],
    ["analyze", "--checkpoint", str(RUN), "--perturb", "dropout:half"],
    ["analyze", "--checkpoint", str(RUN), "--sample", "uniform"],
    ["invert", "--method", "optimize", "--rep", "hog", "--opt", "steps=some", "x.png", "--out", "{tmp}/o"],
    ["invert", "--checkpoint", str(RUN), "--device", "quantum", "x.png", "--out", "{tmp}/o"],
    ["fit-linear", "--rep", "hog", "--data", "builtin", "--out", "{tmp}/l", "--ridge", "lots"],
    ["compare", "--data", "builtin:test", "--method", f"decoder:{RUN}", "--limit", "all", "--out", "{tmp}/c"],
    ["compare", "--data", "builtin:test", "--method", "lasso", "--out", "{tmp}/c"],
    ["reps", "--image-size", "big"],
    ["report", "{tmp}/missing", "--out", "{tmp}/r"],
])
def test_option_values_of_the_wrong_type_give_one_line(tmp_path, untouched, args):
    _one_line_error([arg.replace("{tmp}", str(tmp_path)) for arg in args])
    assert list(tmp_path.iterdir()) == []  # nothing written
