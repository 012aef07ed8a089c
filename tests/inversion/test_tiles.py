"""Inversion at any image size: a photo's own size through the CLI and Python, tiles that agree with one piece,
and one clear line where a run cannot."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from repinv.cli import cli
from repinv.errors import ShapeError
from repinv.inversion.decoder import DecoderInverter
from repinv.inversion.images import invert_images
from repinv.inversion.tiles import cell_size
from repinv.registry.factories import build_decoder, create_representation


def _inverter(name: str, decoder: str | None = None, **options: object) -> DecoderInverter:
    torch.manual_seed(0)
    representation = create_representation(name, **options)
    spec = representation.spec((64, 64))
    return DecoderInverter(representation, build_decoder(spec, 64, decoder, width=0.25), (64, 64)).eval()


def test_cell_sizes_of_the_shallow_representations():
    assert cell_size(create_representation("hog"), (64, 64)) == (8, 8)
    assert cell_size(create_representation("lbp"), (64, 64)) == (16, 16)
    assert cell_size(create_representation("sift"), (64, 64)) == (4, 4)


def test_a_hog_run_inverts_a_97x130_photo_at_its_size():
    inverter = _inverter("hog")
    photo = torch.rand(1, 3, 97, 130)
    assert inverter.reconstruct(photo).shape == (1, 3, 97, 130)
    at_training_size = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(inverter.reconstruct(at_training_size),
                               inverter.decode(inverter.features(at_training_size)))


def test_the_layers_alone_give_the_decoders_output_at_the_training_size():
    decoder = _inverter("hog").decoder
    features = torch.rand(2, *decoder.spec.shape)
    torch.testing.assert_close(decoder.forward_any_size(features), decoder(features))


@pytest.mark.parametrize("name", ["hog", "lbp"])
def test_tiles_agree_with_one_piece(name):
    """A 301x423 photo in tiles of 128 pixels (at least 4) against the same photo in one piece: within 2/255 (in
    fact equal to float precision: tiles start on the decoder's stride grid and keep enough context)."""
    inverter = _inverter(name)
    photo = torch.rand(1, 3, 301, 423, generator=torch.Generator().manual_seed(1))
    whole = inverter.reconstruct(photo, tile=10**6)
    tiled = inverter.reconstruct(photo, tile=128)
    assert (tiled - whole).abs().max() <= 2 / 255


def test_an_fc_decoder_and_a_network_are_refused_in_one_line():
    fc = _inverter("hog", decoder="fc")
    with pytest.raises(ShapeError, match="fc decoder is not fully convolutional.*64x64 images only"):
        fc.reconstruct(torch.rand(1, 3, 97, 130))
    network = _inverter("timm:resnet18:layer1", weights="none")
    with pytest.raises(ShapeError, match="does not follow the image size.*use --size training"):
        network.reconstruct(torch.rand(1, 3, 97, 130))


def test_invert_sizes_through_the_cli(tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray((torch.rand(97, 130, 3) * 255).byte().numpy()).save(photo)
    run = tmp_path / "hog"
    assert CliRunner().invoke(cli, ["train", "--rep", "hog", "--data", "builtin", "--image-size", "32", "--width",
                                    "0.05", "--steps", "2", "--batch-size", "2", "--workers", "0", "--out", str(run),
                                    "--quiet"]).exit_code == 0
    for size, expected in (("auto", (130, 97)), ("native", (130, 97)), ("training", (32, 32))):
        result = CliRunner().invoke(cli, ["invert", "--checkpoint", str(run), str(photo), "--size", size,
                                          "--out", str(tmp_path / size)])
        assert result.exit_code == 0, result.output
        assert Image.open(tmp_path / size / "photo.png").size == expected
    held_out = CliRunner().invoke(cli, ["invert", "--checkpoint", str(run), "builtin:test", "--out",
                                        str(tmp_path / "held-out")])  # what `make demo` ends with
    assert held_out.exit_code == 0, held_out.output
    assert Image.open(tmp_path / "held-out" / "chelsea.png").size == (451, 300)
    assert "chelsea.png" in held_out.output


def test_auto_falls_back_and_native_is_refused_for_an_fc_run(tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray((torch.rand(97, 130, 3) * 255).byte().numpy()).save(photo)
    fc = _inverter("hog", decoder="fc")
    (written,) = invert_images(fc, [photo], tmp_path / "auto", size="auto")
    assert Image.open(written).size == (64, 64)
    with pytest.raises(ShapeError, match="use --size training"):
        invert_images(fc, [photo], tmp_path / "native", size="native")


def test_other_inversion_methods_reconstruct_the_training_size_only(tmp_path):
    from repinv.inversion.mean import MeanImageInverter

    photo = tmp_path / "photo.png"
    Image.fromarray((torch.rand(97, 130, 3) * 255).byte().numpy()).save(photo)
    mean = MeanImageInverter(create_representation("hog"), torch.full((3, 64, 64), 0.5))
    with pytest.raises(ShapeError, match="MeanImageInverter reconstructs 64x64 images only"):
        invert_images(mean, [photo], tmp_path / "native", size="native")
    (written,) = invert_images(mean, [photo], tmp_path / "auto", size="auto")
    assert Image.open(written).size == (64, 64)
