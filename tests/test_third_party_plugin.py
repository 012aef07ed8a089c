"""A third-party plugin written from docs/plugins.md: installed with pip, listed, trained from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "tests" / "fixtures" / "repinv-edges"


def test_docs_show_the_tested_package_verbatim():
    docs = (REPO / "docs" / "plugins.md").read_text()
    assert (PACKAGE / "pyproject.toml").read_text().strip() in docs
    assert (PACKAGE / "repinv_edges" / "__init__.py").read_text().strip() in docs


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(PACKAGE)], check=True, cwd=build, timeout=300,
                   env={**os.environ, "PIP_NO_INDEX": "1"})
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


def _repinv(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repinv", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_installed_plugin_is_listed(installed):
    listing = _repinv(installed, "reps", "--image-size", "32")
    assert listing.returncode == 0, listing.stderr
    assert "edges" in listing.stdout and "2x8x8" in listing.stdout
    plugins = _repinv(installed, "plugins")
    assert "edges" in plugins.stdout


def test_installed_plugin_trains_and_evaluates(installed, photo_folder: Path, tmp_path):
    run = tmp_path / "run"
    trained = _repinv(installed, "train", "--rep", "edges", "--rep-opt", "cell_size=4", "--data", str(photo_folder),
                      "--image-size", "32", "--width", "0.05", "--steps", "3", "--batch-size", "4", "--workers", "0",
                      "--out", str(run), "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert (run / "decoder.safetensors").is_file()
    scored = _repinv(installed, "evaluate", "--checkpoint", str(run), "--data", str(photo_folder), "--workers", "0")
    assert scored.returncode == 0, scored.stderr
    assert "normalized error" in scored.stdout
