"""KEY=VALUE parsing and the training config / recipes."""

from __future__ import annotations

import pytest

from repinv.errors import InvalidOption
from repinv.options import parse_options
from repinv.training.config import TrainConfig, list_recipes, load_recipe, make_config


def test_values_are_json_literals_or_strings():
    assert parse_options(["cell_size=16", "flag=true", "pair=[1,2]", "weights=none", "path=/a/b.pth",
                          "rate=0.5", "empty="]) == {
        "cell_size": 16, "flag": True, "pair": [1, 2], "weights": "none", "path": "/a/b.pth", "rate": 0.5,
        "empty": ""}


@pytest.mark.parametrize("bad", ["cell_size", "=4"])
def test_malformed_pairs_are_refused(bad):
    with pytest.raises(InvalidOption, match="KEY=VALUE"):
        parse_options([bad], "--rep-opt")


def test_every_shipped_recipe_loads_and_validates():
    assert {"hog", "hog-64", "demo"} <= set(list_recipes())
    for name in list_recipes():
        config = make_config(name)
        assert isinstance(config, TrainConfig)


def test_recipe_by_path_and_flags_override(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('rep = "hog"\nimage_size = 32  # small\nwidth = 0.5\n')
    config = make_config(str(path), width=0.25, steps=None)
    assert (config.image_size, config.width) == (32, 0.25)
    assert config.steps is None


def test_recipe_unknown_setting_and_bad_value_are_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("imagesize = 32\n")
    with pytest.raises(InvalidOption, match="unknown setting.*imagesize"):
        load_recipe(str(path))
    path.write_text('steps = "many"\n')
    with pytest.raises(InvalidOption, match="'steps' expects"):
        load_recipe(str(path))
    with pytest.raises(InvalidOption, match="unknown recipe 'nosuch'; shipped recipes: .*hog-64"):
        load_recipe("nosuch")


def test_total_steps_from_epochs():
    assert TrainConfig(epochs=2, batch_size=10).total_steps(55) == 11
    assert TrainConfig(steps=7, epochs=2).total_steps(55) == 7


def test_invalid_ranges_are_refused():
    with pytest.raises(InvalidOption, match="batch_size"):
        make_config(batch_size=0)


def test_option_dicts_merge_with_the_recipe():
    config = make_config("hog-64", decoder_options={"convs": 2})
    assert config.decoder_options == {"contract": 0, "convs": 2}
