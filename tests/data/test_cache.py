"""Feature caches: lossless round trip, sparse storage, resuming, refusing mismatches, training from a cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from repinv.cli import cli
from repinv.data.cache import FeatureCache, cache_features
from repinv.data.sources import ImageDataset
from repinv.errors import CacheError
from repinv.files import load_tensors
from repinv.registry.factories import create_representation
from repinv.representations.base import FeatureSpec, Representation
from repinv.training.config import make_config
from repinv.training.loop import train


class _HalfEmpty(Representation):
    """HOG with every other cell zeroed: a map whose empty cells the cache must restore."""

    name = "half-empty-hog"
    differentiable = False

    def __init__(self) -> None:
        super().__init__()
        self.hog = create_representation("hog")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.hog(images)
        features[..., ::2] = 0
        return features

    def spec(self, image_size: tuple[int, int]) -> FeatureSpec:
        return self.hog.spec(image_size)


@pytest.fixture
def exact_folder(tmp_path):
    """Five 32x32 PNGs: their centre crops at 32 need no resizing, so the cache may store them as 8-bit."""
    folder = tmp_path / "exact"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_cache_round_trip_is_lossless(photo_folder, tmp_path):
    cache = cache_features("hog", str(photo_folder), tmp_path / "cache", image_size=32, shard_size=5, workers=0,
                           show_progress=False)
    crops = ImageDataset(str(photo_folder), 32, train=False)
    hog = create_representation("hog")
    assert len(cache) == len(crops) == 12 and cache.rep == "hog" and cache.image_size == (32, 32)
    assert cache.rep_options == hog.config()
    for i in (0, 4, 5, 11):  # first and last of a shard, and the last, short shard
        image, features = cache[i]
        assert torch.equal(image, crops[i])
        torch.testing.assert_close(features, hog(crops[i][None])[0], rtol=0, atol=1e-6)
    assert load_tensors(tmp_path / "cache" / "shard-00000.safetensors")["images"].dtype == torch.float32


def test_cache_stores_exact_crops_as_8_bit(exact_folder, tmp_path):
    cache = cache_features("hog", str(exact_folder), tmp_path / "cache", image_size=32, workers=0,
                           show_progress=False)
    assert load_tensors(tmp_path / "cache" / "shard-00000.safetensors")["images"].dtype == torch.uint8
    crops = ImageDataset(str(exact_folder), 32, train=False)
    assert all(torch.equal(cache[i][0], crops[i]) for i in range(len(crops)))


def test_empty_cells_are_dropped_and_restored(photo_folder, tmp_path):
    representation = _HalfEmpty()
    cache = cache_features(representation, str(photo_folder), tmp_path / "cache", image_size=32, workers=0,
                           show_progress=False)
    shard = load_tensors(tmp_path / "cache" / "shard-00000.safetensors")
    cells = 4 * 4
    assert shard["cell_values"].shape == (12 * cells // 2, 31)  # only the occupied half is stored
    crops = ImageDataset(str(photo_folder), 32, train=False)
    for i in range(len(cache)):
        assert torch.equal(cache[i][1], representation(crops[i][None])[0])


def test_an_interrupted_cache_is_continued_not_recomputed(photo_folder, tmp_path):
    out = tmp_path / "cache"
    cache_features("hog", str(photo_folder), out, image_size=32, shard_size=5, workers=0, show_progress=False)
    first, last = out / "shard-00000.safetensors", out / "shard-00002.safetensors"
    kept = first.stat().st_mtime_ns
    expected = FeatureCache(out)[11]
    last.unlink()  # as if killed while writing the last shard
    with pytest.raises(CacheError, match="unfinished"):
        FeatureCache(out)
    cache = cache_features("hog", str(photo_folder), out, image_size=32, shard_size=5, workers=0,
                           show_progress=False)
    assert first.stat().st_mtime_ns == kept
    assert all(torch.equal(a, b) for a, b in zip(cache[11], expected))


def test_a_cache_is_continued_from_another_working_directory(photo_folder, tmp_path, monkeypatch):
    """Sources are recorded absolute: the same photos named from elsewhere are the same sources."""
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(photo_folder.parent)
    out = tmp_path / "cache"
    cache_features("hog", photo_folder.name, out, image_size=32, shard_size=5, workers=0, show_progress=False)
    assert FeatureCache(out).manifest["sources"] == [str(photo_folder)]
    (out / "shard-00002.safetensors").unlink()
    monkeypatch.chdir(tmp_path / "elsewhere")
    cache = cache_features("hog", os.path.relpath(photo_folder), out,
                           image_size=32, shard_size=5, workers=0, show_progress=False)
    assert len(cache) == 12


def test_a_cache_made_with_other_settings_is_refused(photo_folder, tmp_path):
    out = tmp_path / "cache"
    cache_features("hog", str(photo_folder), out, image_size=32, workers=0, show_progress=False)
    with pytest.raises(CacheError, match="image_size"):
        cache_features("hog", str(photo_folder), out, image_size=40, workers=0, show_progress=False)
    with pytest.raises(CacheError, match="representation"):
        cache_features("hog", str(photo_folder), out, image_size=32, rep_options={"cell_size": 4}, workers=0,
                       show_progress=False)
    with pytest.raises(CacheError, match="not a feature cache"):
        FeatureCache(tmp_path)


def test_training_from_a_cache_equals_training_without_augmentation(photo_folder, tmp_path):
    cache = cache_features("hog", str(photo_folder), tmp_path / "cache", image_size=32, shard_size=5, workers=0,
                           show_progress=False)
    settings = dict(width=0.05, steps=6, batch_size=4, workers=0, device="cpu", sample_every=3, checkpoint_every=3)
    cached = train(make_config(features=str(cache.path), **settings), tmp_path / "cached", show_progress=False)
    direct = train(make_config(rep="hog", image_size=32, data=[str(photo_folder)], augment=False, **settings),
                   tmp_path / "direct", show_progress=False)
    a = load_tensors(cached.run / "decoder.safetensors")
    b = load_tensors(direct.run / "decoder.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    torch.testing.assert_close(load_tensors(cached.run / "mean_image.safetensors")["mean_image"],
                               load_tensors(direct.run / "mean_image.safetensors")["mean_image"])


def test_cli_makes_a_cache_and_trains_from_it(photo_folder, tmp_path):
    runner = CliRunner()
    cache = tmp_path / "cache"
    made = runner.invoke(cli, ["features", "--rep", "hog", "--data", str(photo_folder), "--out", str(cache),
                               "--image-size", "32", "--workers", "0"])
    assert made.exit_code == 0, made.output
    assert "12 cached hog features" in made.output
    trained = runner.invoke(cli, ["train", "--features", str(cache), "--steps", "2", "--batch-size", "4",
                                  "--width", "0.05", "--workers", "0", "--out", str(tmp_path / "run"), "--quiet"])
    assert trained.exit_code == 0, trained.output
    clash = runner.invoke(cli, ["train", "--features", str(cache), "--rep", "lbp", "--out", str(tmp_path / "x")])
    assert clash.exit_code != 0 and "drop --rep" in clash.output
    missing = runner.invoke(cli, ["train", "--features", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")])
    assert missing.exit_code == 1 and "not a feature cache" in missing.output


def test_cli_names_a_default_run_after_the_caches_representation(photo_folder, tmp_path, monkeypatch):
    cache = cache_features("lbp", str(photo_folder), tmp_path / "cache", image_size=32, workers=0,
                           show_progress=False)
    monkeypatch.chdir(tmp_path)
    trained = CliRunner().invoke(cli, ["train", "--features", str(cache.path), "--steps", "1", "--batch-size", "4",
                                       "--width", "0.05", "--workers", "0", "--quiet"])
    assert trained.exit_code == 0, trained.output
    assert [run.name.split("-")[0] for run in (tmp_path / "runs").iterdir()] == ["lbp"]


def test_images_that_fail_to_decode_while_caching_are_totalled_in_one_warning(tmp_path, photos_and_a_cut_jpeg):
    from repinv import DataWarning

    folder = photos_and_a_cut_jpeg
    with pytest.warns(DataWarning) as caught:
        cache_features("hog", str(folder), tmp_path / "cache", image_size=16, workers=0, show_progress=False)
    totals = [str(w.message) for w in caught if "during feature caching" in str(w.message)]
    assert totals == [f"skipped 1 image that failed to decode during feature caching: 1 truncated or corrupt "
                      f"({folder / 'cut.jpg'})"]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_half_precision_cache_stores_half_and_reads_back_float32(tmp_path, photo_folder, dtype):
    exact = cache_features("hog", str(photo_folder), tmp_path / "exact", image_size=32, workers=0,
                           show_progress=False)
    half = cache_features("hog", str(photo_folder), tmp_path / "half", image_size=32, workers=0, dtype=dtype,
                          show_progress=False)
    assert half.manifest["feature_dtype"] == dtype and exact.manifest["feature_dtype"] == "float32"
    stored = load_tensors(tmp_path / "half" / "shard-00000.safetensors")["cell_values"]
    assert stored.dtype == getattr(torch, dtype)
    assert stored.nbytes * 2 == load_tensors(tmp_path / "exact" / "shard-00000.safetensors")["cell_values"].nbytes
    tolerance = {"float16": 1e-3, "bfloat16": 8e-3}[dtype]  # relative precision of the format
    for i in (0, 11):
        (image, features), (exact_image, exact_features) = half[i], exact[i]
        assert features.dtype == torch.float32 and torch.equal(image, exact_image)
        torch.testing.assert_close(features, exact_features, rtol=tolerance, atol=1e-6)
    with pytest.raises(CacheError, match="made with other feature_dtype"):  # continuing needs the same storage
        cache_features("hog", str(photo_folder), tmp_path / "half", image_size=32, workers=0, show_progress=False)


def test_a_half_precision_cache_trains(tmp_path, photo_folder):
    cache_features("hog", str(photo_folder), tmp_path / "cache", image_size=16, workers=0, dtype="float16",
                   show_progress=False)
    config = make_config(features=str(tmp_path / "cache"), width=0.05, steps=3, batch_size=4, workers=0)
    result = train(config, tmp_path / "run", show_progress=False)
    assert result.step == 3 and np.isfinite(result.loss)
