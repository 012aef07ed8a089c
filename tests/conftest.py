"""Shared fixtures: small images on disk, the shared real-photo data (skipped where absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """``$REPINV_SHARED_DATA``, default ``<repo>/../shared/data``."""
    return Path(os.environ.get("REPINV_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_imagenet() -> Path:
    """The shared Tiny ImageNet shards; skips (with the reason) where they are absent."""
    root = shared_data_root() / "tiny-imagenet-64"
    if not (root / "val-000.tar").is_file():
        pytest.skip(f"shared data not found at {root} (set REPINV_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve 48x40 crops of scikit-image's bundled photos, written as PNG files."""
    from skimage import data as skdata

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    sources = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()]
    for i in range(12):
        photo = sources[i % len(sources)]
        y, x = rng.integers(0, photo.shape[0] - 160), rng.integers(0, photo.shape[1] - 160)
        crop = Image.fromarray(photo[y:y + 160, x:x + 160]).resize((48, 40), Image.BILINEAR)
        crop.save(folder / f"photo-{i:02d}.png")
    return folder


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)
