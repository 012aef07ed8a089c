"""The command line: one clear line and a non-zero exit for bad input; the commands' outputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from repinv.cli import cli


def _invoke(*args: str):
    return CliRunner(env={"COLUMNS": "120"}).invoke(cli, list(args), catch_exceptions=False)  # room for every metric


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, photo_folder):
    run = tmp_path_factory.mktemp("runs") / "hog"
    result = _invoke("train", "--rep", "hog", "--data", str(photo_folder), "--image-size", "32", "--width", "0.05",
                     "--steps", "2", "--batch-size", "4", "--workers", "0", "--out", str(run), "--quiet",
                     "--no-compile", "--mixed-precision", "none")
    assert result.exit_code == 0, result.output
    return run


def test_step_speed_flags_reach_the_run(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    assert config["compile"] is False and config["mixed_precision"] == "none"


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("args, fragments", [
    (["--rep", "nosuch"], ["unknown representation 'nosuch'", "available:", "hog"]),
    (["--rep", "hog", "--rep-opt", "cell_size=banana"], ["cell_size", "banana"]),
    (["--rep", "hog", "--rep-opt", "cellsize=4"], ["cellsize"]),
    (["--rep", "hog:fc9"], ["unknown variant 'fc9' for hog: it has no variants"]),
    (["--recipe", "nosuch"], ["unknown recipe 'nosuch'"]),
    (["--rep", "hog", "--rep-opt", "novalue"], ["KEY=VALUE"]),
    (["--rep", "hog", "--decoder", "nosuch"], ["unknown decoder 'nosuch'", "conv"]),
    (["--rep", "hog", "--device", "cuda:7"], ["cuda:7"]),
])
def test_bad_training_input_gives_one_line(args, fragments, photo_folder, tmp_path):
    if "--device" in args and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    _one_line_error(_invoke("train", *args, "--data", str(photo_folder), "--steps", "1", "--out",
                            str(tmp_path / "r"), "--quiet"), *fragments)


def test_empty_data_folder_gives_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(_invoke("train", "--rep", "hog", "--data", str(empty), "--steps", "1", "--out",
                            str(tmp_path / "r"), "--quiet"), str(empty))


def test_missing_checkpoint_gives_one_line(tmp_path):
    _one_line_error(_invoke("evaluate", "--checkpoint", str(tmp_path / "nope")), "not found")


def test_reps_lists_hog_with_its_shape():
    result = _invoke("reps", "--image-size", "64")
    assert result.exit_code == 0
    assert "hog" in result.output and "31x8x8" in result.output
    _one_line_error(_invoke("reps", "zzz*"), "no representation matches")


def test_plugins_lists_core_and_hog():
    result = _invoke("plugins")
    assert all(name in result.output for name in ("repinv.decoders", "repinv.analysis.perturbations", "hog"))


def test_evaluate_prints_table_and_writes_json_and_grid(trained_run, photo_folder, tmp_path):
    out = tmp_path / "eval.json"
    result = _invoke("evaluate", "--checkpoint", str(trained_run), "--data", str(photo_folder), "--workers", "0",
                     "--out", str(out), "--grid", str(tmp_path / "grid.png"))
    assert result.exit_code == 0, result.output
    assert "normalized error" in result.output and "mean image" in result.output
    scores = json.loads(out.read_text())
    assert scores["images"] == 12
    image_metrics = {"normalized_error", "psnr", "ssim", "colour_error", "layout_error"}
    assert set(scores["decoder"]) == image_metrics | {"feature_error"}
    assert set(scores["mean_image"]) == image_metrics
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_invert_images_and_features(trained_run, photo_folder, tmp_path):
    images = sorted(str(p) for p in photo_folder.iterdir())[:3]
    result = _invoke("invert", "--checkpoint", str(trained_run), *images, "--out", str(tmp_path / "rec"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["photo-00.png", "photo-01.png", "photo-02.png"]
    save_file({"features": torch.rand(2, 31, 4, 4)}, str(tmp_path / "f.safetensors"))
    result = _invoke("invert", "--checkpoint", str(trained_run), "--features", str(tmp_path / "f.safetensors"),
                     "--out", str(tmp_path / "dec"))
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "dec").iterdir())) == 2
    save_file({"features": torch.rand(2, 31, 5, 5)}, str(tmp_path / "bad.safetensors"))
    result = _invoke("invert", "--checkpoint", str(trained_run), "--features", str(tmp_path / "bad.safetensors"),
                     "--out", str(tmp_path / "x"))
    _one_line_error(result, "bad.safetensors must have shape (B, 31, 4, 4), got (2, 31, 5, 5)")


def test_help_is_there_for_every_command():
    for command in ("reps", "plugins", "train", "invert", "evaluate", "analyze", "compare", "report", "fit-linear"):
        result = _invoke(command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output


def test_every_option_is_in_the_cli_reference():
    from conftest import REPO

    reference = (REPO / "docs" / "cli.md").read_text()
    for name, command in cli.commands.items():
        assert f"## repinv {name}" in reference
        for parameter in command.params:
            for flag in getattr(parameter, "opts", []):
                if flag.startswith("--"):
                    assert flag in reference, f"{flag} of repinv {name} is missing from docs/cli.md"


def test_training_without_data_is_refused_and_makes_no_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke("train", "--rep", "hog", "--steps", "1", "--quiet")
    _one_line_error(result, "no training data", "--data builtin")
    assert not (tmp_path / "runs").exists()


def test_a_recipe_that_names_its_data_needs_no_data_flag(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('rep = "hog"\ndata = ["builtin"]\nimage_size = 16\nwidth = 0.05\nsteps = 1\nworkers = 0\n')
    result = _invoke("train", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--quiet")
    assert result.exit_code == 0, result.output


def _run_cli(*args: str, columns: int = 80, **env: str) -> subprocess.CompletedProcess[str]:
    """The console script in a child process with stdout and stderr piped (not a terminal), as in a log file."""
    environment = {**os.environ, "COLUMNS": str(columns), **env}
    return subprocess.run([sys.executable, "-m", "repinv", *args], capture_output=True, text=True, env=environment,
                          timeout=300, check=False)


@pytest.mark.parametrize("pattern", ["timm:tf_efficientnet_lite0", "alexnet", "*"])
def test_reps_never_cuts_a_name_in_a_narrow_piped_console(pattern):
    names = _run_cli("reps", pattern, "--names")
    assert names.returncode == 0, names.stderr
    expected = names.stdout.split()
    assert expected and all(":" in name or name in ("hog", "lbp", "sift") for name in expected)
    table = _run_cli("reps", pattern, columns=60)
    assert table.returncode == 0, table.stderr
    assert "…" not in table.stdout
    shown = set(table.stdout.split())
    assert [name for name in expected if name not in shown] == []


def test_progress_goes_to_a_log_as_plain_lines(tmp_path):
    run = tmp_path / "run"
    trained = _run_cli("train", "--rep", "hog", "--data", "builtin", "--image-size", "16", "--width", "0.05",
                       "--steps", "3", "--batch-size", "2", "--workers", "0", "--out", str(run),
                       REPINV_PROGRESS_SECONDS="0")
    assert trained.returncode == 0, trained.stderr
    lines = [line for line in trained.stderr.splitlines() if line.startswith("training hog:")]
    assert [line.split()[2] for line in lines] == ["0/3", "1/3", "2/3", "3/3"], trained.stderr
    assert re.fullmatch(r"training hog: 3/3 \(100%\) · loss [\d.]+ · [\d,]+ img/s · remaining \d\d:\d\d:\d\d · "
                        r"elapsed \d\d:\d\d:\d\d", lines[-1])
    budgeted = _run_cli("train", "--rep", "hog", "--data", "builtin", "--image-size", "16", "--width", "0.05",
                        "--time-budget", "2", "--batch-size", "2", "--workers", "0", "--out", str(tmp_path / "budget"),
                        REPINV_PROGRESS_SECONDS="0")
    assert budgeted.returncode == 0, budgeted.stderr
    last = [line for line in budgeted.stderr.splitlines() if line.startswith("training hog:")][-1]
    # under a time budget the bar counts its seconds, and the steps are a field: not "990/20,000" at the end
    assert re.fullmatch(r"training hog: [12]/2 s \(\d+%\) · step [\d,]+/20,000 · loss [\d.]+ · [\d,]+ img/s · "
                        r"remaining \d\d:\d\d:\d\d · elapsed \d\d:\d\d:\d\d", last), last
    evaluated = _run_cli("evaluate", "--checkpoint", str(run), "--data", "builtin:test", "--workers", "0",
                         REPINV_PROGRESS_SECONDS="3600")
    assert evaluated.returncode == 0, evaluated.stderr
    assert re.search(r"^evaluating: 2/2 \(100%\) · elapsed \d\d:\d\d:\d\d · remaining 00:00:00$", evaluated.stderr,
                     re.M), evaluated.stderr
