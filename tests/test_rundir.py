"""The run directory (repinv/rundir.py): what RunDir writes and reads back, what it says it holds, its log, its
sample grids and result files, and the errors for what is missing."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch

from repinv.errors import CheckpointError
from repinv.files import read_metadata
from repinv.rundir import RunDir

METADATA = {"representation": {"name": "hog", "options": {"cell_size": 8}}, "image_size": [16, 24], "step": 5,
            "decoder": {"name": "conv", "config": {"name": "conv"}}}


def _tensors(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"layer.weight": torch.randn(4, 3, generator=generator), "layer.bias": torch.randn(4, generator=generator)}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_a_path_nothing_is_written_to_holds_nothing(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not any((run.holds_decoder(), run.holds_linear(), run.holds_state(), run.holds_encoder(),
                    run.holds_log()))
    assert not run.path.exists()  # creating the object touches nothing
    assert run.read_log() == [] and run.read_mean_image() is None and run.read_encoder() is None
    assert run.read_settings() is None and run.sample_grids() == []
    run.keep_log_until(3)
    assert not run.path.exists()


def test_names_and_places(tmp_path):
    run = RunDir(tmp_path / "run")
    assert os.fspath(run) == str(run) == str(tmp_path / "run") and repr(run) == f"RunDir({str(tmp_path / 'run')!r})"
    assert isinstance(run.best, RunDir) and run.best.path == tmp_path / "run" / "best"
    assert run.best.best.path == tmp_path / "run" / "best" / "best"
    assert run.evaluation_file == tmp_path / "run" / "evaluation.json"
    assert run.evaluation_grid == tmp_path / "run" / "evaluation.png"
    assert run.analysis_folder == tmp_path / "run" / "analysis"
    assert run.sample_grid(40) == tmp_path / "run" / "samples" / "step-40.png"


def test_write_model_and_read_it_back(tmp_path):
    run = RunDir(tmp_path / "run")
    mean = torch.rand(3, 16, 24)
    run.write_model(_tensors(0), METADATA, mean)
    assert run.holds_decoder() and not run.holds_encoder() and not run.holds_linear()
    _assert_same(run.read_decoder(), _tensors(0))
    assert run.metadata() == METADATA and run.read_encoder() is None
    assert torch.equal(run.read_mean_image(), mean) and torch.equal(run.require_mean_image(), mean)
    assert run.identity() == ({"name": "hog", "options": {"cell_size": 8}}, (16, 24))
    assert run.representation_name() == "hog"

    run.write_model(_tensors(1), {**METADATA, "step": 6}, mean, encoder=_tensors(2))
    assert run.holds_encoder() and run.metadata()["step"] == 6
    _assert_same(run.read_decoder(), _tensors(1))
    _assert_same(run.read_encoder(), _tensors(2))
    assert read_metadata(run.path / "encoder.safetensors")["step"] == 6  # the encoder says which run it is from


def test_identity_needs_the_representation_and_image_size(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_model(_tensors(0), {"representation": {"name": "hog", "options": {}}}, torch.rand(3, 4, 4))
    with pytest.raises(CheckpointError, match="lacks 'image_size'"):
        run.identity()
    run.write_model(_tensors(0), {"image_size": [4, 4]}, torch.rand(3, 4, 4))
    assert run.representation_name() == "?"


def test_a_linear_run(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_linear(_tensors(3), METADATA, None)
    assert run.holds_linear() and not run.holds_decoder() and run.read_mean_image() is None
    assert run.metadata() == METADATA and run.identity()[1] == (16, 24)  # read from the linear map's file
    metadata, tensors = run.read_linear()
    assert metadata == METADATA
    _assert_same(tensors, _tensors(3))


def test_read_linear_on_a_decoder_run_names_the_decoder_kind(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_model(_tensors(0), METADATA, torch.rand(3, 16, 24))
    message = f"holds a decoder, not a linear baseline: use decoder:{run.path}"
    with pytest.raises(CheckpointError, match=re.escape(message) + "$"):
        run.read_linear()


def test_write_state_and_read_it_back(tmp_path):
    run = RunDir(tmp_path / "run")
    training = {"rep": "hog", "steps": 10, "lr": 0.001}
    state = {"step": 4, "position": 16, "optimizer": {"groups": [1]}, "training": training}
    readable = {k: v for k, v in state.items() if k != "optimizer"}
    run.write_state(_tensors(4), state, readable)
    assert run.holds_state()
    counters, tensors = run.read_state()
    assert counters == state
    _assert_same(tensors, _tensors(4))
    assert json.loads((run.path / "state.json").read_text()) == readable
    assert run.training_settings() == training


def test_settings(tmp_path):
    run = RunDir(tmp_path / "deep" / "run")
    run.write_settings({"rep": "hog", "steps": 3})
    assert run.read_settings() == {"rep": "hog", "steps": 3}


def test_the_log_skips_a_line_cut_short(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.append_log({"step": 1, "loss": 0.5})
    run.append_log({"step": 2, "loss": 0.25})
    assert run.holds_log()
    with open(run.path / "metrics.jsonl", "a") as log:  # a kill while writing, after a stray non-record line
        log.write("[1, 2]\n" + '{"step": 3, "lo')
    assert run.read_log() == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]


def test_keep_log_until_drops_later_steps_and_cut_lines(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    for record in ({"step": 1, "loss": 1.0}, {"step": 2, "val": {"psnr": 9.0}}, {"step": 3, "loss": 0.5}):
        run.append_log(record)
    with open(run.path / "metrics.jsonl", "a") as log:
        log.write('{"step": 4, "lo')
    run.keep_log_until(2)
    assert run.read_log() == [{"step": 1, "loss": 1.0}, {"step": 2, "val": {"psnr": 9.0}}]
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]  # the file itself is rewritten, not just read
    run.append_log({"step": 3, "loss": 0.4})
    assert [record["step"] for record in run.read_log()] == [1, 2, 3]


def test_sample_grids_come_in_step_order(tmp_path):
    run = RunDir(tmp_path / "run")
    for step in (10, 2, 100, 1):
        run.sample_grid(step).parent.mkdir(parents=True, exist_ok=True)
        run.sample_grid(step).write_bytes(b"png")
    (run.path / "samples" / "notes.txt").write_text("not a grid")
    (run.path / "samples" / "final.png").write_text("not a step grid")
    assert run.sample_grids() == [run.sample_grid(step) for step in (1, 2, 10, 100)]


def test_result_files_leave_out_the_runs_own_settings(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_settings({"rep": "hog"})
    run.write_state(_tensors(0), {"training": {}}, {"step": 0})
    for name in ("evaluation.json", "compare.json", "analysis.json"):
        (run.path / name).write_text("{}")
    (run.path / "evaluation.png").write_bytes(b"png")
    assert run.result_files() == [run.path / name for name in ("analysis.json", "compare.json", "evaluation.json")]


def test_what_is_missing_is_refused_clearly(tmp_path):
    missing = RunDir(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match=re.escape(f"run directory {str(missing.path)!r} not found")):
        missing.require()
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    assert run.require() is run
    with pytest.raises(CheckpointError, match=r"decoder\.safetensors not found: is this a repinv run directory"):
        run.metadata()
    with pytest.raises(CheckpointError, match="has no mean image: the mean-image baseline needs a run trained with"):
        run.require_mean_image()
