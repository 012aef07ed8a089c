"""``KEY=VALUE`` options from the command line and recipes.

A value is parsed as a JSON literal when it is one (``16``, ``2.5``, ``true``, ``[1, 2]``, ``"x"``) and kept as
a string otherwise, so ``--rep-opt weights=none`` and ``--rep-opt cell_size=4`` both do what they say. The
factory that receives the options validates them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from repinv.errors import InvalidOption

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


def with_defaults(family: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A factory's options over its ``defaults``, refusing names it does not know.

    Args:
        family: the representation family, for the message.
        options: the options given.
        defaults: every option the factory takes, with its default.

    Returns:
        ``defaults`` updated with ``options``.

    Raises:
        InvalidOption: an option not in ``defaults`` (the message lists the valid ones).
    """
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise InvalidOption(f"unknown {family} option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                            f"valid options: {', '.join(defaults)}")
    return {**defaults, **options}


def size_pair(value: Any, what: str = "image_size") -> tuple[int, int]:
    """``(H, W)`` from a pair of positive integers (a list from JSON counts) or one integer for a square."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair)):
        raise InvalidOption(f"{what} must be (H, W), two positive integers, got {value!r}")
    return int(pair[0]), int(pair[1])
