"""bench/layer_study.py end to end at a toy size: every stage, every figure, and a second run that redoes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, shared_data_root

SCRIPT = REPO / "bench" / "layer_study.py"


def _study(out: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), "--steps", "2", "--train-images", "48", "--val-images", "24",
               "--layers", "blocks.5.0.bn2", "pooled", "logits", "--out", str(out)]
    env = {**os.environ, "REPINV_SHARED_DATA": str(shared_data_root())}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_the_study_runs_every_stage_and_resumes_without_redoing_work(tiny_imagenet, trained_lite0, tmp_path):
    out = tmp_path / "study"
    first = _study(out)
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads((out / "study.json").read_text())
    assert set(record["seconds"]) == {"features", "training", "analysis", "recognition", "figures"}
    analysis = record["results"]["analysis"]
    assert set(analysis) == {"trained", "random", "trained-logits", "random-logits"}
    assert [entry["label"].rsplit(":", 1)[1] for entry in analysis["trained"]["checkpoints"]] == \
        ["blocks.5.0.bn2", "pooled", "logits"]
    assert analysis["trained"]["checkpoints"][0]["images"] == 24
    assert record["non_negative"] == {"blocks.5.0.bn2": True, "pooled": True, "logits": False}
    recognition = record["results"]["recognition"]
    assert recognition["images"] == 24 and set(recognition["top1_agreement"]) == {
        "unperturbed", "keep-top:5", "drop-top:5", "photo at 16x16", "photo at 8x8"}
    for figure in ("figure5-layers.png", "figure7-per-layer.png", "interpolation-pooled.png", "samples-logits.png"):
        assert (out / figure).stat().st_size > 1000, figure
    assert "| pooled |" in (out / "summary.md").read_text() and "study time" in first.stdout

    decoders = {path: path.stat().st_mtime_ns for path in (out / "runs").rglob("decoder.safetensors")}
    assert len(decoders) == 6
    second = _study(out)
    assert second.returncode == 0, second.stderr[-3000:]
    assert ": training" not in second.stdout and ": resuming" not in second.stdout  # nothing trained again
    assert {path: path.stat().st_mtime_ns for path in decoders} == decoders
    assert json.loads((out / "study.json").read_text())["results"]["analysis"] == analysis
