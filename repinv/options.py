"""``KEY=VALUE`` options from the command line and recipes.

A value is parsed as a JSON literal when it is one (``16``, ``2.5``, ``true``, ``[1, 2]``, ``"x"``) and kept as
a string otherwise, so ``--rep-opt weights=none`` and ``--rep-opt cell_size=4`` both do what they say. The
factory that receives the options validates them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .errors import InvalidOption

__all__ = ["parse_value", "parse_options"]


def parse_value(text: str) -> Any:
    """Parse one option value: a JSON literal when it is one, the text itself otherwise."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_options(pairs: Iterable[str], what: str = "option") -> dict[str, Any]:
    """Parse ``KEY=VALUE`` strings into a dict.

    Args:
        pairs: strings such as ``"cell_size=4"``.
        what: how to name them in errors (e.g. ``"--rep-opt"``).

    Returns:
        The options; a key given twice keeps its last value.

    Raises:
        InvalidOption: a string without ``=`` or with an empty key.
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidOption(f"{what} expects KEY=VALUE (e.g. cell_size=4), got {pair!r}")
        options[key] = parse_value(value.strip())
    return options
