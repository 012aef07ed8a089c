"""PNG grids: sizes, pixels in place, labels that wrap or are cut instead of overlapping."""

import numpy as np
import pytest
import torch
from PIL import Image

from repinv.pictures import LABEL_WIDTH, PADDING, write_image_table, write_pairs_grid


def _pixels(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def _solid(rows: int, value: float, size: int = 16) -> torch.Tensor:
    return torch.full((rows, 3, size, size), value)


def test_pairs_grid_alternates_originals_and_reconstructions(tmp_path):
    images, reconstructions = _solid(6, 0.0), _solid(6, 1.5)  # reconstructions are clamped to white
    reconstructions[:, 0] = 0.0  # cyan, so they differ from the white padding
    pixels = _pixels(write_pairs_grid(images, reconstructions, tmp_path / "pairs.png", pairs_per_row=4))
    pitch = 16 + PADDING
    # 6 pairs, 4 per row: 8 columns, 2 rows
    assert pixels.shape == (2 * pitch + PADDING, 8 * pitch + PADDING, 3)
    centre = PADDING + 8
    assert pixels[centre, centre].tolist() == [0, 0, 0]
    assert pixels[centre, pitch + centre].tolist() == [0, 255, 255]
    assert pixels[pitch + centre, 3 * pitch + centre].tolist() == [0, 255, 255]


def test_table_without_labels_keeps_image_size(tmp_path):
    columns = [_solid(3, 0.0), _solid(3, 0.5), _solid(3, 1.0)]
    pixels = _pixels(write_image_table(columns, tmp_path / "table.png"))
    pitch = 16 + PADDING
    assert pixels.shape == (3 * pitch + PADDING, 3 * pitch + PADDING, 3)
    # column j of every row holds columns[j]
    for row in range(3):
        assert [pixels[PADDING + row * pitch + 8, PADDING + j * pitch + 8, 0] for j in range(3)] == [0, 128, 255]


def test_labels_enlarge_small_images_and_add_a_header(tmp_path):
    columns = [_solid(2, 0.0), _solid(2, 1.0)]
    pixels = _pixels(write_image_table(columns, tmp_path / "labelled.png", labels=["image", "decoder"]))
    factor = -(-LABEL_WIDTH // 16)
    pitch = 16 * factor + PADDING
    assert pixels.shape[1] == 2 * pitch + PADDING
    header = pixels.shape[0] - (2 * pitch + PADDING)
    assert header > 10
    assert (pixels[:header] < 128).any()  # the labels are drawn in the header
    assert pixels[header + PADDING + 1, PADDING + 1].tolist() == [0, 0, 0]  # images start below it


def test_long_labels_stay_inside_their_columns(tmp_path):
    long = "decoder:runs/a-very-long-folder-name-without-breaks"
    columns = [_solid(1, 1.0) for _ in range(3)]
    pixels = _pixels(write_image_table(columns, tmp_path / "long.png", labels=["image", long, "mean"]))
    pitch = 16 * -(-LABEL_WIDTH // 16) + PADDING
    header = pixels.shape[0] - (pitch + PADDING)
    dark = (pixels[:header] < 128).any(axis=(0, 2))
    # the padding columns between labels stay white: no label runs into its neighbour
    for boundary in (pitch, 2 * pitch):
        assert not dark[boundary:boundary + PADDING].any()
    assert header >= 2 * 13  # the long label was wrapped onto several lines


def test_table_refuses_a_label_count_that_does_not_match(tmp_path):
    with pytest.raises(ValueError, match="2 labels for 3 columns"):
        write_image_table([_solid(1, 0.0)] * 3, tmp_path / "x.png", labels=["a", "b"])
