"""KEY=VALUE parsing, option validation (Option, validate_options) and the training config / recipes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from repinv.errors import InvalidOption
from repinv.options import (
    Option,
    dataclass_options,
    option_defaults,
    option_error,
    parse_options,
    size_pair,
    validate_options,
    with_defaults,
)
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
    with pytest.raises(InvalidOption,
                       match=r"bad.toml': unknown training option imagesize; valid options: image_size, "):
        load_recipe(str(path))
    path.write_text('steps = "many"\n')
    with pytest.raises(InvalidOption, match="training option steps must be a positive integer or null, got 'many'"):
        load_recipe(str(path))
    with pytest.raises(InvalidOption, match="unknown recipe 'nosuch'; shipped recipes: .*hog-64"):
        load_recipe("nosuch")


def test_total_steps_from_epochs():
    assert TrainConfig(epochs=2, batch_size=10).total_steps(55) == 11
    assert TrainConfig(steps=7, epochs=2).total_steps(55) == 7


def test_invalid_ranges_are_refused():
    with pytest.raises(InvalidOption, match="batch_size"):
        make_config(batch_size=0)
    with pytest.raises(InvalidOption,
                       match=r"training option betas must be a pair of numbers in \[0, 1\), got \(0.9, 1\)"):
        make_config(betas=(0.9, 1))
    with pytest.raises(InvalidOption, match=r"training option schedule must be one of paper, .*, got 'linear'"):
        make_config(schedule="linear")
    with pytest.raises(InvalidOption, match=r"training option data must be at least one data source.*, got \[\]"):
        TrainConfig(data=[]).validate()
    assert TrainConfig(data=[], features="cache").validate().features == "cache"


def test_config_values_take_their_fields_types():
    config = make_config(steps=200.0, epochs=2, data="builtin", scale=[1, 2])
    assert (config.steps, config.epochs, config.data, config.scale) == (200, 2.0, ["builtin"], (1.0, 2.0))
    assert type(config.steps) is int and type(config.epochs) is float
    config = TrainConfig(image_size=32.0, betas=[0.5, 0.9]).validate()
    assert type(config.image_size) is int and config.betas == (0.5, 0.9)
    for bad in (True, 2.5, float("inf")):
        with pytest.raises(InvalidOption, match=f"training option steps must be .*, got {bad!r}"):
            make_config(steps=bad)


def test_option_dicts_merge_with_the_recipe():
    config = make_config("hog-64-conv", decoder_options={"convs": 2})
    assert config.decoder_options == {"contract": 0, "convs": 2}


# ---------------------------------------------------------------------------------------------------------- the API

SCHEMA = (
    Option("cell_size", 8, int, "cell side in pixels", minimum=1),
    Option("orientations", 9, int, "orientations", minimum=1, maximum=32),
    Option("rate", 0.5, float, "a share", minimum=0, below=1),
    Option("gain", 1.0, float, "a factor", above=0),
    Option("bilinear", False, bool, "a switch"),
    Option("layout", "auto", ("auto", "NCHW", "NHWC"), "a choice"),
    Option("limit", None, int, "optional", minimum=0, optional=True, keywords=("auto",)),
    Option("pair", (1.0, 1.0), float, "a pair", minimum=1, length=2),
    Option("sources", ["builtin"], list, "strings"),
)


def test_defaults_are_filled_in_schema_order():
    assert validate_options("demo", {"gain": 2}, SCHEMA) == {
        "cell_size": 8, "orientations": 9, "rate": 0.5, "gain": 2.0, "bilinear": False, "layout": "auto",
        "limit": None, "pair": (1.0, 1.0), "sources": ["builtin"]}
    assert validate_options("demo", {"gain": 2}, SCHEMA, fill_defaults=False) == {"gain": 2.0}
    assert option_defaults(SCHEMA)["sources"] == ["builtin"]
    first, second = option_defaults(SCHEMA), validate_options("demo", {}, SCHEMA)
    first["sources"].append("x")  # defaults are copies: a list is never shared
    assert second["sources"] == ["builtin"] and SCHEMA[-1].default == ["builtin"]


def test_unknown_names_list_the_valid_ones_nearest_first():
    with pytest.raises(InvalidOption) as error:
        validate_options("demo", {"layuot": "NCHW"}, SCHEMA)
    assert str(error.value).startswith("unknown demo option layuot; valid options: layout, ")
    assert "cell_size" in str(error.value)
    with pytest.raises(InvalidOption) as error:
        validate_options("demo", {"zzz": 1, "cellsize": 4}, SCHEMA)
    assert str(error.value).startswith("unknown demo options cellsize, zzz; valid options: cell_size, ")


def test_integers_accept_integral_floats_and_numbers_accept_integers():
    checked = validate_options("demo", {"cell_size": 200.0, "gain": 3, "rate": 0}, SCHEMA)
    assert checked["cell_size"] == 200 and type(checked["cell_size"]) is int
    assert checked["gain"] == 3.0 and type(checked["gain"]) is float and type(checked["rate"]) is float
    with pytest.raises(InvalidOption, match=r"demo option cell_size must be a positive integer, got 2\.5"):
        validate_options("demo", {"cell_size": 2.5}, SCHEMA)
    with pytest.raises(InvalidOption, match="demo option cell_size must be a positive integer, got '4'"):
        validate_options("demo", {"cell_size": "4"}, SCHEMA)


@pytest.mark.parametrize("name", ["cell_size", "gain"])
def test_bools_are_never_numbers(name):
    with pytest.raises(InvalidOption, match=f"demo option {name} must be a positive .*, got True"):
        validate_options("demo", {name: True}, SCHEMA)
    with pytest.raises(InvalidOption, match="demo option bilinear must be true or false, got 1"):
        validate_options("demo", {"bilinear": 1}, SCHEMA)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("name", ["cell_size", "gain", "rate"])
def test_non_finite_numbers_are_refused(name, value):
    with pytest.raises(InvalidOption, match=f"demo option {name} must be .*, got {value!r}"):
        validate_options("demo", {name: value}, SCHEMA)


@pytest.mark.parametrize("name, value, what", [
    ("cell_size", 0, "a positive integer"),
    ("orientations", 33, "an integer in [1, 32]"),
    ("rate", 1.0, "a number in [0, 1)"),
    ("rate", -0.1, "a number in [0, 1)"),
    ("gain", 0, "a positive number"),
    ("pair", (0.5, 2), "a pair of numbers >= 1"),
    ("pair", (1, 2, 3), "a pair of numbers >= 1"),
    ("pair", "12", "a pair of numbers >= 1"),
])
def test_bounds_are_checked(name, value, what):
    with pytest.raises(InvalidOption) as error:
        validate_options("demo", {name: value}, SCHEMA)
    assert str(error.value) == f"demo option {name} must be {what}, got {value!r}"
    assert validate_options("demo", {"orientations": 32, "rate": 0, "pair": [1, 3]}, SCHEMA)["pair"] == (1.0, 3.0)


def test_choices_keywords_and_lists():
    assert validate_options("demo", {"layout": "NHWC", "limit": "auto", "sources": "a"}, SCHEMA)["sources"] == ["a"]
    with pytest.raises(InvalidOption, match=r"^demo option layout must be one of auto, NCHW, NHWC, got 'nhwc'$"):
        validate_options("demo", {"layout": "nhwc"}, SCHEMA)
    with pytest.raises(InvalidOption, match=r"^demo option limit must be a non-negative integer, 'auto' or null, "
                                            r"got 'many'$"):
        validate_options("demo", {"limit": "many"}, SCHEMA)
    with pytest.raises(InvalidOption, match="demo option sources must be a string or list of strings, got \\[1\\]"):
        validate_options("demo", {"sources": [1]}, SCHEMA)


def test_none_is_allowed_only_where_declared():
    assert validate_options("demo", {"limit": None}, SCHEMA)["limit"] is None
    for name in ("cell_size", "gain", "bilinear", "layout", "pair", "sources"):
        with pytest.raises(InvalidOption, match=f"^demo option {name} must be .*, got None$"):
            validate_options("demo", {name: None}, SCHEMA)


def test_a_schema_refuses_its_own_mistakes():
    with pytest.raises(ValueError, match="default"):
        Option("cell_size", 0, int, minimum=1)
    with pytest.raises(ValueError, match="minimum or above"):
        Option("gain", 1.0, float, minimum=0, above=0)
    with pytest.raises(ValueError, match="kind"):
        Option("x", 1, complex)


def test_option_error_and_plain_arguments_share_the_style():
    assert str(option_error("hog", "cell_size", "a positive integer", 0)) == \
        "hog option cell_size must be a positive integer, got 0"
    assert str(option_error("", "scale", "a pair", (2, 1))) == "scale must be a pair, got (2, 1)"
    assert size_pair(4) == (4, 4) and size_pair([3, 5]) == (3, 5)
    with pytest.raises(InvalidOption, match=r"^output_size must be a pair of positive integers \(H, W\), or one for a "
                                            r"square, got \(32.0, 32\)$"):
        size_pair((32.0, 32), "output_size")


def test_with_defaults_only_refuses_unknown_names():
    assert with_defaults("edges", {"cell_size": "anything"}, {"cell_size": 4, "seed": 0}) == {
        "cell_size": "anything", "seed": 0}
    with pytest.raises(InvalidOption, match=r"^unknown edges option cellsize; valid options: cell_size, seed$"):
        with_defaults("edges", {"cellsize": 4}, {"cell_size": 4, "seed": 0})


@dataclass
class _Settings:
    steps: int = 10  # a count
    rate: float | None = None  # optional
    pair: tuple[float, float] = (0.0, 1.0)  # a pair
    names: list[str] = field(default_factory=list)  # strings
    mode: str = "a"  # a choice, by extra


def test_a_schema_from_a_dataclass():
    schema = dataclass_options(_Settings, {"steps": {"minimum": 1}, "mode": {"kind": ("a", "b")}})
    assert [(o.name, o.kind, o.optional, o.length) for o in schema] == [
        ("steps", int, False, None), ("rate", float, True, None), ("pair", float, False, 2),
        ("names", list, False, None), ("mode", ("a", "b"), False, None)]
    assert validate_options("settings", {"steps": 3.0, "rate": 1}, schema) == {
        "steps": 3, "rate": 1.0, "pair": (0.0, 1.0), "names": [], "mode": "a"}
    with pytest.raises(InvalidOption, match=r"^settings option steps must be a positive integer, got 0$"):
        validate_options("settings", {"steps": 0}, schema)


def test_the_layer_study_recipes_share_one_budget():
    """bench/layer_study.py compares layers: every lite0 recipe differs from the others in its layer alone, and every
    layer exists in the network."""
    from repinv.registry.factories import create_representation

    names = [name for name in list_recipes() if name.startswith("lite0-")]
    assert len(names) >= 8
    configs = [make_config(name).to_dict() for name in names]
    budgets = [{key: value for key, value in config.items() if key != "rep"} for config in configs]
    assert all(budget == budgets[0] for budget in budgets), "the study's recipes must share steps, batch, width, ..."
    layers = {config["rep"].rsplit(":", 1)[1] for config in configs}
    assert {"blocks.1", "blocks.5", "blocks.5.0.bn2", "pooled", "logits"} <= layers
    for config in configs:
        assert create_representation(config["rep"], weights="none").spec((64, 64)).numel > 0
