"""The mean-image baseline (repinv/inversion/mean.py): MeanImageInverter predicts the mean training image whatever
the features; load_mean_image reads it from a run directory and refuses a run without one."""

from __future__ import annotations

import pytest
import torch

import repinv
from repinv.inversion.base import InversionMethod
from repinv.inversion.mean import MeanImageInverter, load_mean_image
from repinv.rundir import RunDir


def _mean(height=16, width=24):
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(2))


def test_it_predicts_the_mean_image_for_each_sample_of_any_batch():
    mean = _mean()
    inverter = MeanImageInverter(repinv.create_representation("hog"), mean)
    assert isinstance(inverter, InversionMethod)
    for features in (torch.rand(1, 31, 2, 3), torch.rand(5, 31, 2, 3), torch.rand(2, 7), torch.zeros(3)):
        decoded = inverter.decode(features)
        assert decoded.shape == (len(features), 3, 16, 24)
        assert all(torch.equal(image, mean) for image in decoded)
    images = torch.rand(4, 3, 16, 24)
    reconstructed = inverter.reconstruct(images)
    assert reconstructed.shape == (4, 3, 16, 24) and all(torch.equal(image, mean) for image in reconstructed)


def test_its_size_and_spec_come_from_the_mean_image():
    inverter = MeanImageInverter(repinv.create_representation("hog"), _mean(16, 24).double(), {"step": 7})
    assert inverter.image_size == (16, 24)
    assert inverter.spec == repinv.create_representation("hog").spec((16, 24))
    assert inverter.mean_image.dtype == torch.float32 and inverter.device == torch.device("cpu")
    assert inverter.metadata == {"step": 7} and not inverter.own_encoder
    assert MeanImageInverter(repinv.create_representation("hog"), _mean(8, 8)).metadata == {}


@pytest.mark.parametrize("shape", [(16, 24), (1, 16, 24), (4, 16, 24), (1, 3, 16, 24)])
def test_a_mean_image_of_the_wrong_shape_is_refused(shape):
    with pytest.raises(repinv.ShapeError, match=r"mean image must have shape \(3, H, W\)"):
        MeanImageInverter(repinv.create_representation("hog"), torch.rand(*shape))


@pytest.fixture
def run(tmp_path):
    """A run directory as training writes it, holding a known mean image (16x24, HOG with 4-pixel cells)."""
    folder = RunDir(tmp_path / "run")
    metadata = {"representation": {"name": "hog", "options": {"cell_size": 4}}, "image_size": [16, 24], "step": 3}
    folder.write_model({"w": torch.zeros(1)}, metadata, _mean())
    return folder


def test_load_mean_image_gives_the_runs_mean_image(run):
    inverter = load_mean_image(run.path, "cpu")
    assert torch.equal(inverter.mean_image, _mean()) and inverter.image_size == (16, 24)
    assert inverter.representation.config()["cell_size"] == 4 and inverter.spec.shape == (31, 4, 6)
    assert inverter.metadata["step"] == 3 and not inverter.training
    assert torch.equal(inverter.reconstruct(torch.rand(2, 3, 16, 24))[1], _mean())


def test_a_run_without_a_mean_image_is_refused(run):
    (run.path / "mean_image.safetensors").unlink()
    with pytest.raises(repinv.CheckpointError, match="has no mean image: the mean-image baseline needs"):
        load_mean_image(run, "cpu")
    with pytest.raises(repinv.CheckpointError, match="not found"):
        load_mean_image(run.path / "elsewhere", "cpu")
