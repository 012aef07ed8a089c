"""bench/decoders.py at a toy size: the equal-steps part trains and scores both recipes, a second call redoes
nothing; the profile times every layer of both decoders."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, shared_data_root

SCRIPT = REPO / "bench" / "decoders.py"


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REPINV_SHARED_DATA": str(shared_data_root())}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_equal_steps_trains_and_scores_each_recipe_once(tiny_imagenet, tmp_path):
    args = ("steps", "--pairs", "hog-64-conv:hog-64", "--seeds", "0", "--steps", "3", "--limit", "16",
            "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "steps.json"))
    first = _bench(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    runs = json.loads((tmp_path / "steps.json").read_text())["runs"]
    assert [(run["recipe"], run["steps"]) for run in runs] == [("hog-64-conv", 3), ("hog-64", 3)]
    assert all(0 < run["normalized_error"] < 2 and run["images_per_s"] > 0 for run in runs)
    stamps = {path: path.stat().st_mtime for path in (tmp_path / "runs").rglob("decoder.safetensors")}
    second = _bench(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads((tmp_path / "steps.json").read_text())["runs"] == runs
    assert {path: path.stat().st_mtime for path in stamps} == stamps  # nothing trained again


@pytest.mark.slow
def test_profile_times_every_weighted_layer(tmp_path):
    result = _bench("profile", "--recipes", "hog-64-conv", "hog-64", "--repeats", "2",
                    "--results", str(tmp_path / "profile.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    conv, residual = json.loads((tmp_path / "profile.json").read_text())["profiles"]
    assert [layer["layer"] for layer in conv["layers"]] == [f"conv{i}" for i in range(1, 6)] + \
        [f"upconv{j}" for j in range(1, 4)]
    assert [layer["layer"] for layer in residual["layers"]] == ["conv_in", "block1", "block2", "block3", "block4",
                                                                "norm", "up1", "up2", "up3"]
    assert all(layer["forward_ms"] > 0 and layer["backward_ms"] > 0 for layer in conv["layers"] + residual["layers"])
    assert residual["layers"][-1]["output"] == [3, 64, 64]
