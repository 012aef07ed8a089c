"""A trained decoder as an inversion method (repinv/inversion/decoder.py): DecoderInverter's decoding, shape check
and upsampling, and load_decoder's rebuilding of a run (and what it refuses)."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

import repinv
from repinv.files import load_tensors, read_metadata, save_tensors
from repinv.inversion.decoder import DecoderInverter, load_decoder
from repinv.rundir import RunDir

SIZE = (16, 16)


@pytest.fixture(scope="module")
def hog_run(tmp_path_factory, photo_folder):
    """A 2-step HOG run at 16x16, and the decoder the training process held in memory at its end."""
    training = importlib.import_module("repinv.training.loop")  # the module; `repinv.train` is the function
    built = []
    original = training.build_decoder

    def spy(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    run = tmp_path_factory.mktemp("inverter") / "run"
    config = repinv.make_config(rep="hog", data=[str(photo_folder)], image_size=16, width=0.05, steps=2, batch_size=4,
                                workers=0, device="cpu", sample_every=100, checkpoint_every=100)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "build_decoder", spy)
        repinv.train(config, run, show_progress=False)
    assert len(built) == 1
    return run, built[0].eval()


def _in_memory(output_size=None, metadata=None):
    hog = repinv.create_representation("hog")
    spec = hog.spec(SIZE)
    torch.manual_seed(0)
    decoder = repinv.build_decoder(spec, SIZE, output_size=output_size, width=0.05).eval()
    return DecoderInverter(hog, decoder, SIZE, metadata)


def test_the_old_names_are_the_new_ones():
    assert repinv.Inverter is DecoderInverter and repinv.load is load_decoder


def test_decode_checks_the_feature_shape():
    inverter = _in_memory()
    assert inverter.spec.shape == (31, 2, 2) and inverter.image_size == SIZE
    assert inverter.decode(torch.rand(3, 31, 2, 2)).shape == (3, 3, 16, 16)
    for wrong in ((3, 31, 2, 3), (3, 30, 2, 2), (31, 2, 2), (3, 124)):
        with pytest.raises(repinv.ShapeError, match=r"features must have shape \(B, 31, 2, 2\)"):
            inverter.decode(torch.rand(*wrong))


def test_decode_is_the_decoders_output_at_the_image_size():
    inverter = _in_memory()
    features = torch.rand(2, 31, 2, 2, dtype=torch.float64)  # taken as float32
    with torch.no_grad():
        expected = inverter.decoder(features.float())
    assert torch.equal(inverter.decode(features), expected)


def test_a_smaller_prediction_is_upsampled_bilinearly_to_the_image_size():
    inverter = _in_memory(output_size=8)
    features = torch.rand(2, 31, 2, 2)
    with torch.no_grad():
        small = inverter.decoder(features)
    assert small.shape == (2, 3, 8, 8)
    decoded = inverter.decode(features)
    assert decoded.shape == (2, 3, 16, 16)
    torch.testing.assert_close(decoded, F.interpolate(small, size=SIZE, mode="bilinear", align_corners=False),
                               rtol=0, atol=0)
    assert not decoded.requires_grad  # decoding needs no gradients


def test_reconstruct_is_decode_of_features():
    inverter = _in_memory()
    images = torch.rand(3, 3, 16, 16)
    features = inverter.features(images)
    assert torch.equal(features, inverter.representation(images))
    assert torch.equal(inverter.reconstruct(images), inverter.decode(features))
    with pytest.raises(repinv.ShapeError):  # features() checks the images
        inverter.features(torch.rand(3, 1, 16, 16))


@pytest.mark.parametrize(("metadata", "own"), [
    (None, False),
    ({}, False),
    ({"training": {}}, False),
    ({"training": {"finetune_encoder": False}}, False),
    ({"training": {"finetune_encoder": True}}, True),
])
def test_own_encoder_follows_the_training_metadata(metadata, own):
    assert _in_memory(metadata=metadata).own_encoder is own


def test_a_loaded_run_reconstructs_like_the_trained_decoder_in_memory(hog_run):
    run, trained = hog_run
    loaded = load_decoder(run, "cpu")
    assert isinstance(loaded, DecoderInverter) and not loaded.training and not loaded.own_encoder
    assert loaded.image_size == SIZE and loaded.metadata["step"] == 2 and loaded.device == torch.device("cpu")
    torch.testing.assert_close(loaded.mean_image, RunDir(run).require_mean_image())
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.decoder.state_dict()[key], value), key
    in_memory = DecoderInverter(repinv.create_representation("hog"), trained, SIZE)
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loaded.reconstruct(images), in_memory.reconstruct(images), rtol=1e-5, atol=1e-6)
    assert torch.equal(repinv.load(RunDir(run), "cpu").reconstruct(images), loaded.reconstruct(images))


def test_loading_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(repinv.CheckpointError, match=r"run directory .*nowhere.* not found"):
        load_decoder(tmp_path / "nowhere", "cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(repinv.CheckpointError, match=r"decoder\.safetensors not found"):
        load_decoder(tmp_path / "empty", "cpu")


def test_a_run_whose_representation_now_gives_other_features_is_refused(hog_run, tmp_path):
    run, _ = hog_run
    copy = tmp_path / "changed"
    copy.mkdir()
    path = run / "decoder.safetensors"
    metadata = read_metadata(path)
    metadata["representation"]["options"]["cell_size"] = 4  # 31x4x4 at 16x16, where the decoder took 31x2x2
    save_tensors(copy / "decoder.safetensors", load_tensors(path), metadata)
    with pytest.raises(repinv.CheckpointError, match=r"hog now gives features 31x4x4 at \(16, 16\), but the decoder "
                                                     r"in .*changed was trained on 31x2x2"):
        load_decoder(copy, "cpu")


def test_a_fine_tuned_run_decodes_its_own_encoders_features(tiny_encoder, photo_folder, tmp_path):
    config = repinv.make_config(rep=tiny_encoder, data=[str(photo_folder)], image_size=16, width=0.05, steps=2,
                                batch_size=4, workers=0, device="cpu", finetune_encoder=True, sample_every=100,
                                checkpoint_every=100)
    repinv.train(config, tmp_path / "run", show_progress=False)
    loaded = load_decoder(tmp_path / "run", "cpu")
    assert loaded.own_encoder and loaded.metadata["training"]["finetune_encoder"] is True
    assert not loaded.representation.training  # dropout off: the features are a function of the images
    initial = repinv.create_representation(tiny_encoder).model[0].weight
    assert not torch.equal(loaded.representation.model[0].weight, initial)  # the fine-tuned weights, from the run
    images = torch.rand(2, 3, 16, 16)
    assert torch.equal(loaded.features(images), loaded.features(images))
