"""Evaluation at the photos' own sizes: an error that does not depend on size, equal to the paper's at the training
size, and one clear line for a run that cannot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from repinv.analysis.evaluate import evaluate, full_size_scores
from repinv.cli import cli
from repinv.errors import ShapeError
from repinv.inversion.decoder import DecoderInverter
from repinv.registry.factories import build_decoder, create_representation


def _inverter(decoder: str | None = None) -> DecoderInverter:
    torch.manual_seed(0)
    hog = create_representation("hog")
    return DecoderInverter(hog, build_decoder(hog.spec((32, 32)), 32, decoder, width=0.25), (32, 32),
                           mean_image=torch.full((3, 32, 32), 0.5)).eval()


def _photos(folder, sizes):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (height, width) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return str(folder)


def test_at_the_training_size_the_full_size_error_is_the_papers(tmp_path):
    photos = _photos(tmp_path / "photos", [(32, 32)] * 6)
    inverter = _inverter()
    full = full_size_scores(inverter, photos)
    usual = evaluate(inverter, photos)
    assert full["images"] == 6
    for name in ("decoder", "mean_image"):
        # the usual path keeps its reference images in float16: equal to that precision
        assert full[name]["normalized_error"] == pytest.approx(usual[name]["normalized_error"], rel=2e-3)
        assert full[name]["psnr"] == pytest.approx(usual[name]["psnr"], rel=1e-4)


def test_photos_of_other_sizes_are_scored_whole(tmp_path):
    photos = _photos(tmp_path / "photos", [(97, 130), (64, 48), (40, 200)])
    full = full_size_scores(_inverter(), photos, limit=2)
    assert full["images"] == 2 and 0 < full["decoder"]["normalized_error"] < 5


def test_a_run_that_cannot_is_refused_in_one_line(tmp_path):
    with pytest.raises(ShapeError, match="fc decoder is not fully convolutional"):
        full_size_scores(_inverter("fc"), _photos(tmp_path / "photos", [(97, 130)] * 2))
    run = tmp_path / "fc"
    assert CliRunner().invoke(cli, ["train", "--rep", "hog", "--decoder", "fc", "--width", "0.05", "--data", "builtin",
                                    "--image-size", "32", "--steps", "1", "--batch-size", "2", "--workers", "0",
                                    "--out", str(run), "--quiet"]).exit_code == 0
    result = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(run), "--size", "native", "--workers", "0"])
    assert result.exit_code == 1
    assert "fc decoder is not fully convolutional" in result.output and "Traceback" not in result.output


def test_cli_prints_the_full_size_rows_beside_the_usual_ones(tmp_path):
    run = tmp_path / "hog"
    assert CliRunner().invoke(cli, ["train", "--rep", "hog", "--width", "0.05", "--data", "builtin", "--image-size",
                                    "32", "--steps", "1", "--batch-size", "2", "--workers", "0", "--out", str(run),
                                    "--quiet"]).exit_code == 0
    result = CliRunner(env={"COLUMNS": "120"}).invoke(cli, ["evaluate", "--checkpoint", str(run), "--size", "native",
                                                            "--workers", "0", "--out", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    assert "normalized error ↓, full size" in result.output
    full = json.loads((tmp_path / "e.json").read_text())["full_size"]
    assert full["images"] == 2 and set(full) == {"images", "skipped", "decoder", "mean_image"}
