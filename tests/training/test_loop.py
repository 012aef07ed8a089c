"""Training: run directory contents, exact resume, time budget, validation with a best checkpoint, interrupts."""

from __future__ import annotations

import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import time

import pytest
import torch

from repinv.data.stream import PositionSampler
from repinv.errors import CheckpointError, InvalidOption
from repinv.files import load_tensors, read_metadata
from repinv.inversion.decoder import load
from repinv.registry.factories import create_representation
from repinv.training.config import learning_rate_factor, make_config
from repinv.training.loop import resume, train


def _config(photo_folder, **overrides):
    settings = dict(rep="hog", image_size=32, width=0.05, steps=4, batch_size=4, workers=0, data=[str(photo_folder)],
                    log_every=1, sample_every=2, checkpoint_every=2, device="cpu")
    settings.update(overrides)
    return make_config(**settings)


def test_run_directory_is_complete_and_self_describing(photo_folder, tmp_path):
    result = train(_config(photo_folder), tmp_path / "run", show_progress=False)
    run = result.run
    assert result.step == 4 and result.stopped_by == "steps"
    for name in ("decoder.safetensors", "state.safetensors", "state.json", "metrics.jsonl", "mean_image.safetensors",
                 "samples/step-2.png", "samples/step-4.png"):
        assert (run / name).is_file(), name
    meta = read_metadata(run / "decoder.safetensors")
    assert meta["representation"]["name"] == "hog" and meta["representation"]["options"]["cell_size"] == 8
    assert meta["decoder"]["name"] == "conv" and meta["image_size"] == [32, 32] and meta["step"] == 4
    assert meta["training"]["lr"] == 1e-3 and meta["training"]["betas"] == [0.9, 0.999]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4]
    assert all({"loss", "lr", "images_per_s"} <= set(line) for line in lines)
    assert not (run / "encoder.safetensors").exists()  # HOG has no weights to store
    inverter = load(run, "cpu")
    assert inverter.reconstruct(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_resume_continues_exactly_like_an_uninterrupted_run(photo_folder, tmp_path):
    # a constant rate: with the paper's schedule a 3-step run halves its rate earlier than a 6-step run
    straight = train(_config(photo_folder, steps=6, schedule="constant"), tmp_path / "straight", show_progress=False)
    train(_config(photo_folder, steps=3, schedule="constant"), tmp_path / "split", show_progress=False)
    resumed = resume(tmp_path / "split", steps=6, show_progress=False)
    assert resumed.step == 6
    a = load_tensors(straight.run / "decoder.safetensors")
    b = load_tensors(resumed.run / "decoder.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_features_of_several_steps_at_once_train_like_features_per_step(photo_folder, tmp_path, monkeypatch):
    from repinv_hog.hog import HOG

    calls = []
    forward = HOG.forward
    monkeypatch.setattr(HOG, "forward", lambda self, images: calls.append(len(images)) or forward(self, images))
    settings = dict(steps=6, schedule="constant", sample_every=100)
    grouped = train(_config(photo_folder, feature_batch=12, **settings), tmp_path / "grouped", show_progress=False)
    grouped_calls, calls[:] = list(calls), []
    per_step = train(_config(photo_folder, feature_batch=1, **settings), tmp_path / "per-step", show_progress=False)
    assert grouped_calls.count(12) == 2 and 4 not in grouped_calls  # 6 steps of 4 images: two calls of 3 batches
    assert calls.count(4) == 6 and 12 not in calls
    a = load_tensors(grouped.run / "decoder.safetensors")
    b = load_tensors(per_step.run / "decoder.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    assert resume(grouped.run, steps=8, feature_batch=4, show_progress=False).step == 8  # a resumable setting


def test_schedule_halves_rate_at_50_75_90_percent(photo_folder, tmp_path):
    train(_config(photo_folder, steps=20, sample_every=100, checkpoint_every=100), tmp_path / "r",
          show_progress=False)
    rates = [json.loads(line)["lr"] for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    # the rate logged at step k is the one step k used, at progress (k - 1) / 20
    assert rates[9] == 1e-3 and rates[10] == 5e-4 and rates[15] == 2.5e-4 and rates[18] == 1.25e-4


def test_schedules():
    assert [learning_rate_factor("paper", p) for p in (0.0, 0.49, 0.5, 0.75, 0.9, 1.0)] == [
        1, 1, 0.5, 0.25, 0.125, 0.125]
    assert [learning_rate_factor("paper-to-zero", p) for p in (0.5, 0.9, 0.95, 1.0)] == pytest.approx(
        [0.5, 0.125, 0.0625, 0.0])
    assert learning_rate_factor("cosine", 0.5) == pytest.approx(0.5)
    assert learning_rate_factor("constant", 0.99) == 1.0


def test_time_budget_anneals_the_rate_before_stopping(photo_folder, tmp_path):
    train(_config(photo_folder, steps=100_000, time_budget=3.0, sample_every=10**6, checkpoint_every=10**6),
          tmp_path / "r", show_progress=False)
    rates = [json.loads(line)["lr"] for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    # The last step starts before the budget ends; on a loaded machine one step may span the 90% mark.
    assert rates[0] == 1e-3 and rates[-1] in (2.5e-4, 1.25e-4)
    assert rates == sorted(rates, reverse=True)


def test_time_budget_counts_every_session_of_a_resumed_run(photo_folder, tmp_path):
    run = tmp_path / "run"
    first = train(_config(photo_folder, steps=100_000, time_budget=1.0, schedule="cosine", sample_every=10**6),
                  run, show_progress=False)
    assert first.stopped_by == "time_budget"
    elapsed = json.loads((run / "state.json").read_text())["elapsed"]
    assert elapsed >= 1.0
    # the same budget again: nothing left, and the run is untouched
    with pytest.raises(InvalidOption, match=r"its whole time budget of 1 s: give a larger --time-budget"):
        resume(run, show_progress=False)
    assert json.loads((run / "state.json").read_text())["step"] == first.step
    # a larger total budget goes on where the schedule left it, not from the initial rate
    resumed = resume(run, time_budget=2 * elapsed, show_progress=False)
    assert resumed.stopped_by == "time_budget" and resumed.step > first.step
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    after = [line for line in lines if line["step"] > first.step]
    # cosine at half the budget is half the initial rate; a restarted schedule would begin at 1e-3
    assert after[0]["lr"] <= 0.55e-3 and after[0]["elapsed"] >= elapsed
    assert [line["lr"] for line in after] == sorted((line["lr"] for line in after), reverse=True)


def test_resume_of_a_finished_run_says_what_to_give(photo_folder, tmp_path):
    train(_config(photo_folder, steps=2), tmp_path / "run", show_progress=False)
    with pytest.raises(InvalidOption, match="all its 2 steps: give more --steps"):
        resume(tmp_path / "run", show_progress=False)
    assert resume(tmp_path / "run", steps=3, show_progress=False).step == 3


def test_samples_and_validation_see_a_fine_tuned_encoder_in_evaluation_mode(tiny_encoder, photo_folder, tmp_path,
                                                                            monkeypatch):
    training = importlib.import_module("repinv.training.loop")  # the module; `repinv.train` is the function
    seen = []
    original = training.evaluate

    def spy(inverter, *args, **kwargs):
        seen.append((inverter.representation.training, inverter.decoder.training))
        return original(inverter, *args, **kwargs)

    monkeypatch.setattr(training, "evaluate", spy)
    config = _config(photo_folder, rep=tiny_encoder, finetune_encoder=True, val_data=[str(photo_folder)],
                     val_every=2)
    result = train(config, tmp_path / "run", show_progress=False)
    assert seen == [(False, False), (False, False)]
    # the steps between still trained the encoder in training mode: dropout made its features random
    assert result.loss == result.loss and (tmp_path / "run" / "samples" / "step-4.png").is_file()
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["validation"] == result.validation  # kept for a resume


def test_resume_drops_log_lines_after_the_checkpoint_and_a_cut_line(photo_folder, tmp_path):
    run = tmp_path / "run"
    train(_config(photo_folder, steps=4), run, show_progress=False)
    with open(run / "metrics.jsonl", "a") as log:  # what a run killed after its checkpoint at step 4 leaves
        log.write(json.dumps({"step": 5, "loss": 1.0}) + "\n" + '{"step": 6, "lo')
    resume(run, steps=6, show_progress=False)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6] and lines[4]["loss"] != 1.0


def test_epochs_given_alone_override_a_recipes_steps(photo_folder, tmp_path):
    config = make_config("hog-64-conv", epochs=2.0)
    assert config.steps is None and config.total_steps(1000) == 125  # 2 x 1000 images / batch 16
    train(_config(photo_folder, steps=2), tmp_path / "run", show_progress=False)
    assert resume(tmp_path / "run", epochs=2.0, show_progress=False).step == 6  # 2 x 12 photos / batch 4


def test_resume_takes_encoder_weights_from_the_run_not_their_source(photo_folder, tmp_path, tiny_encoder):
    """A run trained from a local weights file resumes after the file is gone: frozen from encoder.safetensors,
    fine-tuned from its state."""
    weights = tmp_path / "encoder.pth"
    for finetune in (False, True):
        torch.save(create_representation(tiny_encoder).model.state_dict(), weights)
        run = tmp_path / f"run-{finetune}"
        train(_config(photo_folder, rep=tiny_encoder, rep_options={"weights": str(weights)}, steps=2,
                      finetune_encoder=finetune), run, show_progress=False)
        weights.unlink()
        assert resume(run, steps=3, show_progress=False).step == 3
        assert load(run, "cpu").reconstruct(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_resume_refuses_changing_what_defines_the_run(photo_folder, tmp_path):
    train(_config(photo_folder, steps=2), tmp_path / "run", show_progress=False)
    with pytest.raises(InvalidOption, match="cannot change rep when resuming"):
        resume(tmp_path / "run", rep="lbp", show_progress=False)
    with pytest.raises(CheckpointError, match="already holds a run"):
        train(_config(photo_folder), tmp_path / "run", show_progress=False)


def test_time_budget_stops_cleanly_with_a_checkpoint(photo_folder, tmp_path):
    result = train(_config(photo_folder, steps=100_000, time_budget=0.5), tmp_path / "run", show_progress=False)
    assert result.stopped_by == "time_budget" and 0 < result.step < 100_000
    assert read_metadata(tmp_path / "run" / "state.safetensors")["step"] == result.step
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == result.step


def test_the_log_ends_with_the_last_step_whatever_log_every(photo_folder, tmp_path):
    run = train(_config(photo_folder, log_every=3), tmp_path / "run", show_progress=False).run
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [3, 4]


def test_validation_keeps_the_best_checkpoint(photo_folder, tmp_path):
    result = train(_config(photo_folder, val_data=[str(photo_folder)], val_every=2), tmp_path / "run",
                   show_progress=False)
    assert set(result.validation) >= {"normalized_error", "psnr", "ssim"}
    vals = [json.loads(line)["val"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
            if "val" in json.loads(line)]
    assert len(vals) == 2
    best = read_metadata(tmp_path / "run" / "best" / "decoder.safetensors")
    assert best["metrics"]["validation"]["normalized_error"] == min(v["normalized_error"] for v in vals)


def test_position_sampler_is_endless_resumable_and_splits_ranks():
    full = PositionSampler(5, seed=1)
    stream = [i for _, i in zip(range(12), full)]
    assert sorted(v % 5 for v in stream[:5]) == list(range(5))  # one epoch is a permutation
    assert [v // 5 for v in stream] == [0] * 5 + [1] * 5 + [2] * 2  # virtual indices carry the epoch
    later = [i for _, i in zip(range(5), PositionSampler(5, seed=1, start=7))]
    assert later == stream[7:12]
    rank0 = [i for _, i in zip(range(6), PositionSampler(5, seed=1, rank=0, world=2))]
    rank1 = [i for _, i in zip(range(6), PositionSampler(5, seed=1, rank=1, world=2))]
    assert rank0 == stream[0:12:2] and rank1 == stream[1:12:2]


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(photo_folder, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "repinv", "train", "--rep", "hog", "--data", str(photo_folder), "--image-size",
               "32", "--width", "0.05", "--batch-size", "4", "--workers", "0", "--steps", "100000", "--out", str(run),
               "--quiet"]
    env = {**os.environ}
    process = subprocess.Popen(command + ["--recipe", str(_fast_checkpoint_recipe(tmp_path))], env=env)
    deadline = time.monotonic() + 120
    while not (run / "state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = read_metadata(run / "state.safetensors")["step"]
    assert saved > 0
    resumed = subprocess.run([sys.executable, "-m", "repinv", "train", "--resume", str(run), "--steps",
                              str(saved + 3), "--quiet"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {saved + 3}" in resumed.stdout
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == saved + 3
    # steps the killed run logged after its checkpoint are logged once, by the resumed run
    steps = [line["step"] for line in lines if "loss" in line]
    assert steps == sorted(set(steps))


def test_sigterm_saves_and_reports_how_to_resume(photo_folder, tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "repinv", "train", "--rep", "hog", "--data", str(photo_folder),
                                "--image-size", "32", "--width", "0.05", "--batch-size", "4", "--workers", "0",
                                "--steps", "100000", "--out", str(run), "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "training interrupted at step" in stderr and f"--resume {run}" in stderr
    assert "Traceback" not in stderr
    assert read_metadata(run / "state.safetensors")["step"] > 0


def _fast_checkpoint_recipe(tmp_path):
    path = tmp_path / "fast.toml"
    path.write_text("checkpoint_every = 5  # checkpoint often so the kill loses little\nlog_every = 1\n")
    return path


def test_training_keeps_freed_memory_for_reuse(photo_folder, tmp_path, monkeypatch):
    from repinv.training.allocator import keep_freed_memory

    train_module = importlib.import_module("repinv.training.loop")  # the module: `repinv.train` is also the function

    calls = []
    monkeypatch.setattr(train_module, "keep_freed_memory", lambda: calls.append(1) or True)
    train(_config(photo_folder, steps=1), tmp_path / "run", show_progress=False)
    assert calls == [1]
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert keep_freed_memory()  # glibc took both settings
    else:
        print(f"not glibc ({sys.platform}): keep_freed_memory() is a no-op here")
        assert not keep_freed_memory()


@pytest.mark.parametrize("workers", [0, 2])
def test_images_that_fail_to_decode_are_totalled_in_one_line_at_the_end(tmp_path, photos_and_a_cut_jpeg, workers):
    import os
    import subprocess
    import sys

    folder = photos_and_a_cut_jpeg
    result = subprocess.run([sys.executable, "-m", "repinv", "train", "--rep", "hog", "--data", str(folder),
                             "--image-size", "16", "--width", "0.05", "--steps", "8", "--batch-size", "4",
                             "--workers", str(workers), "--out", str(tmp_path / "run"), "--quiet"],
                            capture_output=True, text=True, env=os.environ, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: skipped 1 image that failed to decode during training: 1 truncated or corrupt "
                        f"({folder / 'cut.jpg'})"], result.stderr
