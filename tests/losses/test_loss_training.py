"""Training with loss terms: the default is exactly the paper's training, an adversarial run resumes exactly, runs
made before losses existed continue with mse, fine-tuning from another run, and the command line."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import REPO

from repinv.cli import cli
from repinv.errors import CheckpointError
from repinv.files import load_tensors
from repinv.training.config import make_config
from repinv.training.loop import resume, train

FIXTURE = REPO / "tests" / "fixtures" / "default-loss"


def _fixture_settings() -> dict:  # type: ignore[type-arg]
    spec = importlib.util.spec_from_file_location("make_default_loss", FIXTURE / "make.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.SETTINGS)


def test_the_default_loss_trains_exactly_as_before_losses_existed(tmp_path: Path) -> None:
    config = make_config(**_fixture_settings())
    assert config.loss == {"mse": 1.0}
    run = train(config, tmp_path / "run", show_progress=False).run
    trained, recorded = load_tensors(run / "decoder.safetensors"), load_tensors(FIXTURE / "decoder.safetensors")
    assert trained.keys() == recorded.keys()
    for key, value in recorded.items():
        torch.testing.assert_close(trained[key], value, rtol=0, atol=1e-6, msg=key)
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(line["terms"] == {"mse": line["loss"]} for line in log)


def _adversarial(photo_folder: Path, steps: int) -> dict:  # type: ignore[type-arg]
    return dict(rep="hog", image_size=32, width=0.05, steps=steps, batch_size=4, workers=0, data=[str(photo_folder)],
                log_every=1, sample_every=100, checkpoint_every=100, device="cpu", schedule="constant",
                loss="mse + 0.01*adversarial", loss_options={"adversarial": {"width": 4, "lr": 1e-3}})


def test_an_adversarial_run_killed_and_resumed_continues_exactly(photo_folder: Path, tmp_path: Path) -> None:
    straight = train(make_config(**_adversarial(photo_folder, 6)), tmp_path / "straight", show_progress=False)
    train(make_config(**_adversarial(photo_folder, 3)), tmp_path / "split", show_progress=False)
    resumed = resume(tmp_path / "split", steps=6, show_progress=False)
    a, b = (load_tensors(run.run / "state.safetensors") for run in (straight, resumed))
    assert any(key.startswith("loss.adversarial.discriminator.") for key in a)
    assert any(key.startswith("loss.adversarial.optimizer.") for key in a)
    assert a.keys() == b.keys()
    for key in a:
        if not key.startswith("rng"):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    log = [json.loads(line) for line in (resumed.run / "metrics.jsonl").read_text().splitlines()]
    assert {"mse", "adversarial", "adversarial_discriminator", "adversarial_accuracy"} <= set(log[-1]["terms"])


def test_a_run_made_before_losses_existed_resumes_with_mse(photo_folder: Path, tmp_path: Path) -> None:
    settings = dict(rep="hog", image_size=32, width=0.05, steps=2, batch_size=4, workers=0, data=[str(photo_folder)],
                    device="cpu")
    run = train(make_config(**settings), tmp_path / "old", show_progress=False).run
    for name in ("config.json", "state.json"):  # what the run files held before
        saved = json.loads((run / name).read_text())
        (saved.get("training") or saved).pop("loss")
        (saved.get("training") or saved).pop("loss_options")
        (saved.get("training") or saved).pop("init")
        saved.pop("losses", None)
        (run / name).write_text(json.dumps(saved))
    result = resume(run, steps=3, show_progress=False)
    assert result.step == 3
    assert json.loads((run / "state.json").read_text())["training"]["loss"] == {"mse": 1.0}


def test_fine_tuning_starts_from_another_runs_decoder(photo_folder: Path, tmp_path: Path) -> None:
    settings = dict(rep="hog", image_size=32, width=0.05, batch_size=4, workers=0, data=[str(photo_folder)],
                    device="cpu")
    first = train(make_config(**settings, steps=3), tmp_path / "first", show_progress=False).run
    zero = train(make_config(**settings, steps=1, lr=1e-12, init=str(first)), tmp_path / "tuned",
                 show_progress=False).run
    a, b = load_tensors(first / "decoder.safetensors"), load_tensors(zero / "decoder.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a if "running" not in k and "batches" not in k)
    with pytest.raises(CheckpointError, match=r"cannot start from .*first: decoder .*width.*0.05.* there, "
                                              r".*0.1.* here"):
        train(make_config(**{**settings, "width": 0.1}, steps=1, init=str(first)), tmp_path / "other",
              show_progress=False)


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize(("loss", "options", "message"), [
    ("mse + l2", (), "Error: unknown loss term 'l2'; available: adversarial, feature, mse"),
    ("mse + -0.1*feature", (), "Error: loss term feature needs a positive weight, got '-0.1' (write WEIGHT*NAME, "
                               "e.g. 0.01*feature; terms: adversarial, feature, mse)"),
    ("mse", ("--loss-opt", "rep=hog"), "Error: --loss-opt takes TERM.KEY=VALUE"),
    ("mse", ("--loss-opt", "adversarial.lr=0.1"), "Error: options for loss term adversarial, which the loss"),
    ("mse + adversarial", ("--loss-opt", "adversarial.speed=2"), "Error: unknown adversarial loss option speed"),
])
def test_a_bad_loss_on_the_command_line_is_one_line(photo_folder: Path, tmp_path: Path, loss: str,
                                                   options: tuple[str, ...], message: str) -> None:
    result = _invoke("train", "--rep", "hog", "--data", str(photo_folder), "--image-size", "32", "--steps", "1",
                     "--loss", loss, *options, "--out", str(tmp_path / "run"))
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert message in lines[-1] and len([line for line in lines if line.startswith("Error")]) == 1, result.output
    assert not (tmp_path / "run" / "state.safetensors").exists()


def test_repinv_losses_lists_the_terms() -> None:
    result = CliRunner(env={"COLUMNS": "150"}).invoke(cli, ["losses"])
    assert result.exit_code == 0 and all(name in result.output for name in ("mse", "feature", "adversarial"))


def test_the_cli_records_the_loss_and_its_options(photo_folder: Path, tmp_path: Path) -> None:
    result = _invoke("train", "--rep", "hog", "--data", str(photo_folder), "--image-size", "32", "--width", "0.05",
                     "--batch-size", "4", "--workers", "0", "--steps", "2", "--loss", "mse + 0.1*feature",
                     "--loss-opt", "feature.rep=hog", "--loss-opt", "feature.cell_size=4",
                     "--out", str(tmp_path / "run"), "--quiet")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["loss"] == {"mse": 1.0, "feature": 0.1}
    assert saved["loss_options"] == {"feature": {"rep": "hog", "cell_size": 4}}
    assert sys.modules["repinv.losses.perceptual"]  # imported through the registry
