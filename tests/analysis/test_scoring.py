"""The one scoring loop gives the numbers evaluate, analyze and compare gave before it (a committed fixture)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "scoring"


def _recorder():
    spec = importlib.util.spec_from_file_location("scoring_fixture", FIXTURE / "make_fixture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}{key}/").items()}
    return {prefix.rstrip("/"): value}


def test_scores_match_the_recorded_fixture() -> None:
    expected = _flatten(json.loads((FIXTURE / "expected.json").read_text()))
    actual = _flatten(_recorder().scores())
    added = {key for key in actual if key not in expected}  # metrics added since the fixture was recorded
    assert set(expected) <= set(actual)
    assert added and {key.rsplit("/", 1)[1] for key in added} == {"colour_error", "layout_error"}
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, abs=1e-6), key
