"""`repinv report`: one self-contained HTML page (images as data URIs) that a headless browser renders."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torchvision.utils import save_image

from repinv.analysis.report import report, training_curve_png
from repinv.cli import cli
from repinv.errors import DataError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _png(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(seed)), path)


@pytest.fixture
def run(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    records = [{"step": s, "loss": 0.1 / s, "images_per_s": 500.0, "elapsed": s / 10} for s in range(50, 1050, 50)]
    records.insert(10, {"step": 500, "val": {"normalized_error": 0.6}})
    records.append({"step": 1000, "val": {"normalized_error": 0.5}})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    for step in (200, 400, 600, 1000):
        _png(folder / "samples" / f"step-{step}.png", step)
    (folder / "config.json").write_text(json.dumps({"rep": "hog", "steps": 1000}))
    (folder / "evaluation.json").write_text(json.dumps({
        "images": 10, "data": ["val"], "decoder": {"normalized_error": 0.45, "psnr": 15.8},
        "mean_image": {"normalized_error": 0.72, "psnr": 11.7}}))
    _png(folder / "evaluation.png", 1)
    (folder / "state.json").write_text("{}")  # resume state: not a result, not shown
    return folder


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "compare.json").write_text(json.dumps({
        "images": 4, "data": ["val"], "representation": {"name": "hog", "options": {}}, "image_size": [64, 64],
        "device": "cpu", "batch_size": 64, "files": {"grid": "compare.png"},
        "methods": [{"method": "decoder:runs/x", "normalized_error": 0.45, "feature_error": 0.7, "psnr": 15.0,
                     "ssim": 0.3, "seconds_per_image": 0.001},
                    {"method": "optimize", "normalized_error": 0.68, "feature_error": 0.08, "psnr": 11.0,
                     "ssim": 0.2, "seconds_per_image": 5.0}]}))
    _png(folder / "compare.png", 2)
    (folder / "analyze.json").write_text(json.dumps({"layers": {"conv1": {"binarize": 0.61}}, "plot": "errors.png"}))
    _png(folder / "errors.png", 3)
    return folder


def _embedded_images(page: str) -> list[Image.Image]:
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert all(s.startswith("data:image/png;base64,") for s in sources), "every image is embedded"
    return [Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) for s in sources]


def test_report_collects_curve_samples_evaluation_and_results(run, results, tmp_path):
    page_path = report([run, results / "compare.json", results / "analyze.json"], tmp_path / "out")
    assert page_path == tmp_path / "out" / "report.html"
    page = page_path.read_text()
    images = _embedded_images(page)
    # curve + latest 3 samples + evaluation grid + compare grid + the PNG analyze.json names
    assert len(images) == 1 + 3 + 1 + 1 + 1
    for image in images:
        image.load()
    assert "step-200" not in page and all(f"step-{s}" in page for s in (400, 600, 1000))
    assert "decoder:runs/x" in page and "optimize" in page and "s / image" in page
    assert "layers.conv1.binarize" in page and "0.61" in page
    assert "0.45" in page and "mean image" in page
    assert "<script" not in page and "state.json" not in page


def test_training_curve_plots_loss_and_validation():
    records = [{"step": 10, "loss": 0.2}, {"step": 20, "loss": 0.1}, {"step": 20, "val": {"normalized_error": 0.5}}]
    with Image.open(io.BytesIO(training_curve_png(records))) as curve:
        assert curve.format == "PNG" and curve.width > 300
    assert training_curve_png([{"step": 1, "val": {}}]) is None


def test_bad_paths_are_refused(tmp_path):
    with pytest.raises(DataError, match="at least one"):
        report([], tmp_path)
    with pytest.raises(DataError, match="neither a run directory"):
        report([tmp_path / "missing"], tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DataError, match="cannot read"):
        report([broken], tmp_path)
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and "neither a run directory" in lines[0], result.output


def test_page_renders_in_a_headless_browser(run, results, tmp_path):
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        pytest.skip(f"no headless browser found (looked for {', '.join(BROWSERS)}); .ci/run installs chromium")
    result = CliRunner().invoke(cli, ["report", str(run), str(results / "compare.json"), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "report.html").resolve()
    flags = ["--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<title>repinv report</title>" in dom.stdout and dom.stdout.count("<img") == 1 + 3 + 1 + 1
    shot = tmp_path / "shot.png"
    screenshot = subprocess.run([browser, *flags, "--window-size=1000,1400", f"--screenshot={shot}", page.as_uri()],
                                capture_output=True, text=True, timeout=120)
    assert screenshot.returncode == 0 and shot.is_file(), screenshot.stderr[-2000:]
    with Image.open(shot) as picture:
        colours = picture.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 50, "the screenshot shows more than a blank page"


def test_a_log_line_cut_short_by_a_kill_is_skipped(run, tmp_path):
    with open(run / "metrics.jsonl", "a") as log:
        log.write('{"step": 1050, "lo')
    page = report([run], tmp_path / "out").read_text()
    assert "last logged step 1000" in page
