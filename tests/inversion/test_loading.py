"""Loading an inverter by kind (decoder, linear, optimize) and writing reconstructions."""

import pytest
import torch

from repinv import InvalidOption, LinearInverter, OptimizationInverter, OptimizeSettings, fit_linear, make_config, train
from repinv.inversion.decoder import Inverter
from repinv.inversion.images import invert_images
from repinv.inversion.loading import INVERTER_KINDS, load_inverter
from repinv.inversion.mean import MeanImageInverter
from repinv.rundir import RunDir


@pytest.fixture(scope="module")
def runs(tmp_path_factory, photo_folder):
    """A 2-step HOG decoder run and a linear run, both at 16x16."""
    root = tmp_path_factory.mktemp("inverter-runs")
    config = make_config(rep="hog", data=[str(photo_folder)], image_size=16, width=0.05, steps=2, batch_size=4,
                         workers=0, device="cpu")
    train(config, root / "decoder", show_progress=False)
    fit_linear("hog", str(photo_folder), root / "linear", image_size=16, ridge=0.01, device="cpu")
    return root


@pytest.mark.parametrize(("kind", "cls"), [("decoder", Inverter), ("linear", LinearInverter)])
def test_trained_kinds_load_their_run(runs, kind, cls):
    inverter = load_inverter(kind, runs / kind, device="cpu")
    assert isinstance(inverter, cls) and inverter.image_size == (16, 16)
    assert RunDir(runs / kind).identity() == ({"name": "hog", "options": inverter.representation.config()}, (16, 16))


@pytest.mark.parametrize("kind", ["decoder", "linear"])
def test_the_mean_kind_is_the_runs_mean_training_image(runs, kind):
    mean = load_inverter("mean", runs / kind, device="cpu")
    assert isinstance(mean, MeanImageInverter) and mean.image_size == (16, 16)
    torch.testing.assert_close(mean.mean_image, RunDir(runs / kind).require_mean_image())
    reconstructions = mean.reconstruct(torch.rand(2, 3, 16, 16))
    assert torch.equal(reconstructions[0], mean.mean_image) and torch.equal(reconstructions[1], mean.mean_image)


def test_optimize_takes_the_runs_representation_or_a_named_one(runs):
    settings = OptimizeSettings(steps=4)
    from_run = load_inverter("optimize", runs / "linear", settings=settings, device="cpu")
    assert isinstance(from_run, OptimizationInverter) and from_run.image_size == (16, 16)
    assert from_run.representation.name == "hog" and from_run.settings.steps == 4
    named = load_inverter("optimize", rep="hog", rep_options={"cell_size": 4}, image_size=24, device="cpu")
    assert named.image_size == (24, 24) and named.representation.config()["cell_size"] == 4
    assert named.settings == OptimizeSettings()


def test_every_kind_reconstructs_image_files(runs, photo_folder, tmp_path):
    paths = sorted(photo_folder.glob("*.png"))[:2]
    for kind in INVERTER_KINDS:
        inverter = load_inverter(kind, runs / ("decoder" if kind in ("optimize", "mean") else kind),
                                 settings=OptimizeSettings(steps=2), device="cpu")
        written = invert_images(inverter, paths, tmp_path / kind)
        assert [p.name for p in written] == ["photo-00.png", "photo-01.png"] and all(p.is_file() for p in written)


@pytest.mark.parametrize(("kind", "run", "extra", "message"), [
    ("lasso", None, {}, "unknown inverter kind 'lasso'; use one of: decoder, linear, optimize, mean"),
    ("decoder", None, {}, r"method decoder needs a run directory \(--checkpoint RUN\)$"),
    ("optimize", None, {}, r"or a representation \(--rep REP\)"),
    ("linear", "x", {"rep": "hog"}, "its representation and image size are the run's"),
])
def test_bad_requests_are_refused(kind, run, extra, message):
    with pytest.raises(InvalidOption, match=message):
        load_inverter(kind, run, **extra)



def test_loaded_decoder_is_channels_last_and_decodes_as_trained(runs):
    from repinv.inversion.decoder import load
    from repinv.registry.factories import decoder_from_config

    inverter = load(runs / "decoder", "cpu")
    convolutions = [m.weight for m in inverter.decoder.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    assert convolutions and all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)
    plain = decoder_from_config(inverter.metadata["decoder"]["config"])
    plain.load_state_dict(RunDir(runs / "decoder").read_decoder())
    features = inverter.features(torch.rand(3, 3, 16, 16))
    with torch.no_grad():
        torch.testing.assert_close(inverter.decode(features), plain.eval()(features), atol=1e-5, rtol=1e-5)


def test_same_stems_in_different_batches_get_different_files(runs, photo_folder, tmp_path):
    photo = sorted(photo_folder.glob("*.png"))[0]
    copies = []
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
        copies.append(tmp_path / folder / photo.name)
        copies[-1].write_bytes(photo.read_bytes())
    inverter = load_inverter("decoder", runs / "decoder", device="cpu")
    written = invert_images(inverter, copies, tmp_path / "out", batch_size=2)
    assert [p.name for p in written] == ["photo-00.png", "photo-00-2.png", "photo-00-3.png"]
    assert len(list((tmp_path / "out").glob("*.png"))) == 3
