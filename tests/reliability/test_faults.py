"""Faults during work: kills at named points of training, SIGTERM, a full disk, Ctrl-C during `repinv features` and
`repinv compare`. Each case asserts what the user sees and that what they had (a checkpoint, finished shards,
their files) is kept."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import repinv
from repinv.cli import cli
from repinv.rundir import RunDir
from repinv.training import faults, loop

#: A tiny, fast HOG run on the bundled photos.
TINY = ["--rep", "hog", "--data", "builtin", "--image-size", "16", "--width", "0.05", "--batch-size", "2",
        "--workers", "0"]


def _repinv(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "repinv", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "REPINV_PROGRESS_SECONDS": "3600", **env}, check=False)


def _state_step(run: Path) -> int:
    return int(RunDir(run).read_state()[0]["step"])


def _recipe(tmp_path: Path, **settings: object) -> str:
    path = tmp_path / "recipe.toml"
    path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items()))
    return str(path)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_starts_again_on_resume(tmp_path):
    run = tmp_path / "run"
    killed = _repinv("train", *TINY, "--steps", "6", "--out", str(run), REPINV_TEST_FAULT="after-step:3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not RunDir(run).holds_state() and RunDir(run).read_settings() is not None
    resumed = _repinv("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    warning = [line for line in resumed.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "has no checkpoint yet" in warning[0] and "from step 0" in warning[0]
    assert _state_step(run) == 6


def test_the_first_checkpoint_comes_within_30_seconds_then_on_schedule(tmp_path, monkeypatch, photo_folder):
    """A fake clock that moves 7 s a step: the first checkpoint at 35 s (step 5), then only at the end."""
    fake = {"now": 0.0}
    monkeypatch.setattr(loop, "clock", lambda: fake["now"])
    step, save = loop._Trainer._step, loop._Trainer.save
    saved: list[int] = []

    def slow_step(self, *args, **kwargs):
        fake["now"] += 7.0
        return step(self, *args, **kwargs)

    def record(self):
        saved.append(self.step)
        save(self)

    monkeypatch.setattr(loop._Trainer, "_step", slow_step)
    monkeypatch.setattr(loop._Trainer, "save", record)
    config = repinv.make_config(rep="hog", data=[str(photo_folder)], image_size=16, width=0.05, steps=12,
                                batch_size=2, workers=0, checkpoint_every=1000, checkpoint_seconds=120)
    repinv.train(config, tmp_path / "run", show_progress=False)
    assert saved == [5, 12]
    saved.clear()
    repinv.resume(tmp_path / "run", steps=40, show_progress=False)  # a run with a checkpoint: every 120 s
    assert saved == [30, 40]


@pytest.mark.slow
def test_a_kill_in_the_middle_of_a_checkpoint_keeps_the_previous_one(tmp_path):
    run = tmp_path / "run"
    recipe = _recipe(tmp_path, checkpoint_every=2)
    killed = _repinv("train", "--recipe", recipe, *TINY, "--steps", "6", "--out", str(run),
                     REPINV_TEST_FAULT="checkpoint-write:4")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _state_step(run) == 2  # the previous checkpoint, whole
    repinv.load_decoder(run, "cpu")  # the model files are whole too
    resumed = _repinv("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert _state_step(run) == 6


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_then_exits(tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "repinv", "train", *TINY, "--steps", "100000", "--out",
                                str(run)], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "REPINV_PROGRESS_SECONDS": "0"})
    assert process.stderr is not None
    for line in process.stderr:  # wait for a few steps
        if line.startswith("training hog: 3/"):
            break
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 1
    errors = [line for line in rest.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "checkpoint saved" in errors[0] and f"--resume {run}" in errors[0]
    step = _state_step(run)
    assert 3 <= step < 100000 and f"at step {step}" in errors[0]


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch, photo_folder):
    import repinv.files

    real_save = repinv.files.save_file
    calls = {"state": 0}

    def full_disk(tensors, path, metadata=None):
        if Path(path).name.startswith(".state.safetensors"):
            calls["state"] += 1
            if calls["state"] == 2:  # the second checkpoint's resume state
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(repinv.files, "save_file", full_disk)
    config = repinv.make_config(rep="hog", data=[str(photo_folder)], image_size=16, width=0.05, steps=4,
                                batch_size=2, workers=0, checkpoint_every=2)
    run = tmp_path / "run"
    with pytest.raises(repinv.CheckpointError, match=r"the disk is full: could not write the checkpoint of step 4"):
        repinv.train(config, run, show_progress=False)
    assert _state_step(run) == 2
    assert not [p.name for p in run.iterdir() if ".safetensors." in p.name]  # no temporary file left behind


def test_ctrl_c_during_features_keeps_the_finished_shards(tmp_path, monkeypatch, photo_folder):
    import repinv.data.cache

    real_encode, shards = repinv.data.cache._encode, []

    def interrupted(*args):
        if shards:
            raise KeyboardInterrupt
        shards.append(1)
        return real_encode(*args)

    monkeypatch.setattr(repinv.data.cache, "_encode", interrupted)
    before = _digest(photo_folder)
    result = CliRunner().invoke(cli, ["features", "--rep", "hog", "--data", str(photo_folder), "--image-size", "16",
                                      "--shard-size", "4", "--workers", "0", "--out", str(tmp_path / "cache")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "interrupted" in lines[0] and "again" in lines[0]
    assert (tmp_path / "cache" / "shard-00000.safetensors").is_file()
    assert not (tmp_path / "cache" / "shard-00001.safetensors").exists()
    assert _digest(photo_folder) == before
    monkeypatch.setattr(repinv.data.cache, "_encode", real_encode)
    finished = repinv.cache_features("hog", str(photo_folder), tmp_path / "cache", image_size=16, shard_size=4,
                                     workers=0, show_progress=False)
    assert len(finished) == 12


def test_ctrl_c_during_compare_writes_nothing_and_changes_nothing(tmp_path, monkeypatch):
    from repinv.analysis import metrics

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "scoring" / "decoder"
    before = _digest(fixture)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(metrics.MethodScores, "add", interrupted)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["compare", "--data", "builtin:all", "--method", f"decoder:{fixture}",
                                      "--method", "mean", "--device", "cpu", "--workers", "0", "--out", str(out)])
    assert result.exit_code == 1 and result.output.strip() == "Aborted!"
    assert not out.exists() and _digest(fixture) == before


def test_a_run_without_a_checkpoint_restarts_with_the_changes_given(tmp_path):
    """A restart from step 0 takes the settings a resume may change (here: more steps), in Python as on the CLI."""
    run = tmp_path / "run"
    RunDir(run).write_settings(repinv.make_config(rep="hog", data=["builtin"], image_size=16, width=0.05, steps=2,
                                                  batch_size=2, workers=0).to_dict())
    with pytest.warns(faults.RunWarning, match="starting it again from step 0"):
        result = repinv.resume(run, steps=3, show_progress=False)
    assert result.step == 3 and _state_step(run) == 3


@pytest.mark.slow
def test_a_second_resume_of_a_run_being_trained_is_refused_until_the_first_is_killed(tmp_path):
    run = tmp_path / "run"
    first = _repinv("train", *TINY, "--steps", "2", "--out", str(run))
    assert first.returncode == 0, first.stderr
    before = _state_step(run)
    process = subprocess.Popen([sys.executable, "-m", "repinv", "train", "--resume", str(run), "--steps", "100000"],
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "REPINV_PROGRESS_SECONDS": "0"})
    assert process.stderr is not None
    for line in process.stderr:  # it holds the run once it trains
        if line.startswith("training hog: 3/"):
            break
    second = _repinv("train", "--resume", str(run), "--steps", "50")
    errors = [line for line in second.stderr.splitlines() if line.strip()]
    assert second.returncode == 1 and len(errors) == 1, second.stderr
    assert "is being trained by another repinv process" in errors[0] and f"pid {process.pid}" in errors[0]
    assert _state_step(run) >= before  # the second touched nothing
    process.kill()
    process.wait(timeout=60)
    target = _state_step(run) + 2
    third = _repinv("train", "--resume", str(run), "--steps", str(target))  # the kill released the lock
    assert third.returncode == 0, third.stderr
    assert _state_step(run) == target
