"""Options: ``KEY=VALUE`` parsing, and the one way repinv validates options.

A value is parsed as a JSON literal when it is one (``16``, ``2.5``, ``true``, ``[1, 2]``, ``"x"``) and kept as
a string otherwise, so ``--rep-opt weights=none`` and ``--rep-opt cell_size=4`` both do what they say. The
factory that receives the options validates them.

Every representation factory, decoder builder and settings class describes its options as a schema, a sequence
of :class:`Option`, and checks what it is given with :func:`validate_options`. So a bad option always reads the
same and is always an :class:`~repinv.errors.InvalidOption`::

    hog option cell_size must be a positive integer, got 0
    unknown hog option cellsize; valid options: cell_size, orientations, bilinear_orientations

Example:
    >>> OPTIONS = (Option("cell_size", 8, int, "cell side in pixels", minimum=1),)
    >>> validate_options("hog", {"cell_size": 4.0}, OPTIONS)
    {'cell_size': 4}
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import numbers
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from repinv.errors import InvalidOption, nearest_first

__all__ = [
    "Option",
    "validate_options",
    "option_defaults",
    "option_error",
    "dataclass_options",
    "parse_value",
    "parse_options",
    "with_defaults",
    "size_pair",
]

#: The kinds an :class:`Option` can have besides a choice (a tuple of strings).
KINDS = (int, float, bool, str, dict, list, object)

_INVALID = object()  # what a failed conversion returns, so that None can be a valid result


# ---------------------------------------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Option:
    """One option that a factory, builder or settings class takes: its name, default, kind and bounds.

    Attributes:
        name: the option's name, as given (``cell_size``).
        default: the value when the option is not given (a copy each time, so a list or dict is never shared).
        kind: ``int``, ``float``, ``bool``, ``str``, ``dict``, ``list`` (of strings; one string or path counts as
            a list of one), ``object`` (anything: whoever uses it checks it), or a tuple of the strings allowed
            (a choice).
        help: one line on what the option does.
        minimum: the least value of a number, inclusive.
        maximum: the largest value of a number, inclusive.
        above: an exclusive lower bound (``above=0``: positive).
        below: an exclusive upper bound.
        optional: ``None`` (JSON ``null``) is allowed besides values of ``kind``.
        keywords: strings allowed besides values of ``kind``, returned as they are (``("auto",)``).
        length: the value is a sequence of exactly this many values of ``kind`` (each within the bounds),
            returned as a tuple; ``None`` for a single value.

    Raises:
        ValueError: an inconsistent description (both ``minimum`` and ``above``, an unknown kind, or a default
            the option itself refuses): a mistake in the schema, not in what a user gave.

    Example:
        >>> Option("momentum", 0.9, float, "momentum of gradient descent", minimum=0, below=1).describe()
        'a number in [0, 1)'
    """

    name: str
    default: Any = None
    kind: type | tuple[str, ...] = str
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    optional: bool = False
    keywords: tuple[str, ...] = ()
    length: int | None = None

    def __post_init__(self) -> None:
        if ((self.minimum is not None and self.above is not None)
                or (self.maximum is not None and self.below is not None)):
            raise ValueError(f"option {self.name}: give minimum or above, maximum or below, not both")
        if not (self.kind in KINDS or (isinstance(self.kind, tuple) and all(isinstance(c, str) for c in self.kind))):
            raise ValueError(f"option {self.name}: kind must be one of int, float, bool, str, dict, list, object or "
                             f"a tuple of strings, got {self.kind!r}")
        try:
            self.check(self.default)
        except InvalidOption as error:
            raise ValueError(f"the default of option {self.name} is invalid: {error}") from None

    def check(self, value: Any, owner: str = "") -> Any:
        """``value`` converted to this option's kind, or an error in the shared style.

        Integers accept integral floats (``200.0`` from JSON is 200) and numbers accept integers; a bool is never
        a number, and infinities and NaN are refused.

        Args:
            value: the value given.
            owner: what takes the option, for the message (``"hog"``, ``"conv decoder"``).

        Returns:
            The value: ``int`` or ``float`` for numbers, a tuple when ``length`` is set, a new list or dict.

        Raises:
            InvalidOption: a value of another kind, outside the bounds, or not among the choices.
        """
        if self.kind is object:
            return value
        if value is None:
            result = None if self.optional else _INVALID
        elif isinstance(value, str) and value in self.keywords:
            result = value
        elif self.length is None:
            result = self._single(value)
        elif (isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence)
              or len(value) != self.length):
            result = _INVALID
        else:
            items = tuple(self._single(item) for item in value)
            result = _INVALID if any(item is _INVALID for item in items) else items
        if result is _INVALID:
            raise option_error(owner, self.name, self.describe(), value)
        return result

    def describe(self) -> str:
        """What a valid value is, in words: ``"a positive integer"``, ``"one of auto, NCHW, NHWC"``, ..."""
        if isinstance(self.kind, tuple):
            what = f"one of {', '.join(self.kind)}"
        elif self.kind is bool:
            what = "true or false"
        elif self.length is not None:
            what = f"{'a pair of' if self.length == 2 else self.length} {self._noun(plural=True)}"
        else:
            noun = self._noun(plural=False)
            what = f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
        alternatives = [what, *(repr(k) for k in self.keywords), *(["null"] if self.optional else [])]
        return alternatives[0] if len(alternatives) == 1 else f"{', '.join(alternatives[:-1])} or {alternatives[-1]}"

    def _noun(self, plural: bool) -> str:
        """``"positive integer"``, ``"numbers in [0, 1)"``: the kind with its bounds."""
        nouns: dict[type | tuple[str, ...], str] = {int: "integer", float: "number", str: "string", dict: "mapping",
                                                    list: "string or list of strings"}
        noun = nouns.get(self.kind, "value")
        if plural:
            noun = "strings or lists of strings" if self.kind is list else noun + "s"
        low = self.minimum if self.above is None else self.above
        high = self.maximum if self.below is None else self.below
        if self.kind not in (int, float) or (low is None and high is None):
            return noun
        if high is None and ((low == 0 and self.above is not None) or (low == 1 and self.kind is int)):
            return f"positive {noun}"
        if high is None and low == 0:
            return f"non-negative {noun}"
        if low is not None and high is not None:
            return (f"{noun} in {'(' if self.above is not None else '['}{_bound_text(low)}, {_bound_text(high)}"
                    f"{')' if self.below is not None else ']'}")
        if low is not None:
            return f"{noun} {'>' if self.above is not None else '>='} {_bound_text(low)}"
        assert high is not None  # low is None here, and not both are
        return f"{noun} {'<' if self.below is not None else '<='} {_bound_text(high)}"

    def _single(self, value: Any) -> Any:
        """One value converted to ``kind`` and within the bounds, or ``_INVALID``."""
        kind = self.kind
        if isinstance(kind, tuple):
            return value if isinstance(value, str) and value in kind else _INVALID
        if kind is bool or kind is str:
            return value if isinstance(value, kind) else _INVALID
        if kind is dict:
            return dict(value) if isinstance(value, Mapping) else _INVALID
        if kind is list:
            if isinstance(value, (str, os.PathLike)):
                value = [value]
            if isinstance(value, (bytes, Mapping)) or not isinstance(value, Sequence) or not all(
                    isinstance(item, (str, os.PathLike)) for item in value):
                return _INVALID
            return [os.fspath(item) for item in value]
        return self._number(value)

    def _number(self, value: Any) -> Any:
        """An ``int`` or ``float`` option's value within the bounds, or ``_INVALID``."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return _INVALID
        if isinstance(value, numbers.Integral):
            number: int | float = int(value)
        else:
            number = float(value)
            if not math.isfinite(number) or (self.kind is int and not number.is_integer()):
                return _INVALID
        try:
            number = int(number) if self.kind is int else float(number)
        except OverflowError:  # an integer too large for a float
            return _INVALID
        if ((self.minimum is not None and number < self.minimum) or (self.above is not None and number <= self.above)
                or (self.maximum is not None and number > self.maximum)
                or (self.below is not None and number >= self.below)):
            return _INVALID
        return number


def _bound_text(value: float) -> str:
    """A bound as people write it: ``0``, ``0.5``, ``1e-06``."""
    return f"{value:g}"


def option_error(owner: str, name: str, what: str, value: Any) -> InvalidOption:
    """The error for a bad option value, worded as every option error is.

    For checks an :class:`Option` cannot express (one option against another), so that they read the same.

    Args:
        owner: what takes the option (``"hog"``, ``"conv decoder"``, ``"training"``); empty for a plain argument.
        name: the option's name.
        what: what a valid value is (``"a positive integer"``).
        value: the value given.

    Returns:
        ``InvalidOption("<owner> option <name> must be <what>, got <value!r>")``, to raise.
    """
    subject = f"{owner} option {name}" if owner else name
    return InvalidOption(f"{subject} must be {what}, got {value!r}")


def validate_options(owner: str, given: Mapping[str, Any], schema: Iterable[Option], *,
                     fill_defaults: bool = True) -> dict[str, Any]:
    """Check options against a schema: refuse unknown names, convert and check each value, fill in defaults.

    Args:
        owner: what takes the options, for messages (``"hog"``, ``"conv decoder"``, ``"optimize"``).
        given: the options given, by name.
        schema: every option the owner takes.
        fill_defaults: ``False`` returns only the options given (for overrides merged elsewhere).

    Returns:
        Every option of the schema in its order, given ones converted (see :meth:`Option.check`), the others at
        their defaults; only the given ones when ``fill_defaults`` is false.

    Raises:
        InvalidOption: an unknown name (the message lists the valid ones, nearest first) or a bad value.
    """
    options = {option.name: option for option in schema}
    unknown = sorted(str(name) for name in given if name not in options)
    if unknown:
        raise InvalidOption(f"unknown {owner + ' ' if owner else ''}option{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(unknown)}; valid options: {', '.join(nearest_first(unknown[0], options))}")
    if not fill_defaults:
        return {name: options[name].check(value, owner) for name, value in given.items()}
    return {name: option.check(given[name], owner) if name in given else copy.deepcopy(option.default)
            for name, option in options.items()}


def option_defaults(schema: Iterable[Option]) -> dict[str, Any]:
    """``{name: default}`` of a schema, in its order (copies, so they can be changed)."""
    return {option.name: copy.deepcopy(option.default) for option in schema}


def dataclass_options(cls: type, extra: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[Option, ...]:
    """A schema from a dataclass's fields: the name, default and kind of each from the field, the rest from
    ``extra``, so a settings class keeps one commented field per setting and still validates like a factory.

    Kinds come from the annotations: ``int``, ``float``, ``bool``, ``str``, ``dict[...]``, ``list[str]``,
    ``tuple[X, X]`` (``length`` 2) and any of these ``| None`` (``optional``).

    Args:
        cls: the dataclass.
        extra: more :class:`Option` fields by field name (``{"lr": {"above": 0}}``); a ``kind`` here replaces
            the annotation's (e.g. a tuple of choices for a ``str`` field).

    Returns:
        One :class:`Option` per field, in the fields' order.

    Raises:
        TypeError: a field whose annotation has no option kind, or that has no default.
    """
    hints = typing.get_type_hints(cls)
    schema = []
    for item in dataclasses.fields(cls):
        if item.default is not dataclasses.MISSING:
            default = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{item.name} has no default, so it cannot be an option")
        described = {**_described_kind(hints[item.name], f"{cls.__name__}.{item.name}"),
                     **(extra or {}).get(item.name, {})}
        schema.append(Option(item.name, default, **described))
    return tuple(schema)


def _described_kind(hint: Any, where: str) -> dict[str, Any]:
    """``kind``, ``optional`` and ``length`` of an :class:`Option` from a type annotation."""
    described: dict[str, Any] = {}
    if typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        described["optional"] = True
        hint = rest[0] if len(rest) == 1 else hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and args and Ellipsis not in args and len(set(args)) == 1 and args[0] in (int, float, str):
        return {**described, "kind": args[0], "length": len(args)}
    if hint is list or (origin is list and args in ((), (str,))):
        return {**described, "kind": list}
    if hint is dict or origin is dict:
        return {**described, "kind": dict}
    if hint in (int, float, bool, str):
        return {**described, "kind": hint}
    raise TypeError(f"{where}: no option kind for the annotation {hint}")


# ---------------------------------------------------------------------------------------------------------- parsing


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


# ---------------------------------------------------------------------------------------------------------- helpers


def with_defaults(family: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A factory's options over its ``defaults``, refusing names it does not know; the values are not checked.

    For factories that check their values themselves; :func:`validate_options` with a schema does both.

    Args:
        family: the representation family, for the message.
        options: the options given.
        defaults: every option the factory takes, with its default.

    Returns:
        ``defaults`` updated with ``options``.

    Raises:
        InvalidOption: an option not in ``defaults`` (the message lists the valid ones, nearest first).
    """
    return validate_options(family, options, [Option(name, default, object) for name, default in defaults.items()])


#: A size, for :func:`size_pair`.
_SIZE = Option("size", (1, 1), int, "(H, W) in pixels", minimum=1, length=2)


def size_pair(value: Any, what: str = "image_size", owner: str = "") -> tuple[int, int]:
    """``(H, W)`` from a pair of positive integers (a list from JSON counts) or one integer for a square.

    Args:
        value: the size given.
        what: the option's name, for the message (``"output_size"``).
        owner: what takes it, for the message; empty for a plain argument.

    Returns:
        ``(H, W)``.

    Raises:
        InvalidOption: anything else, floats included.
    """
    def integer(v: Any) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    pair = (value, value) if integer(value) else value
    # Unlike other integer options, a size has never accepted an integral float (32.0): a size is counted, never
    # computed, so a float is more likely a mistake than a size.
    if isinstance(pair, Sequence) and not isinstance(pair, str) and all(integer(v) for v in pair):
        with contextlib.suppress(InvalidOption):
            height, width = _SIZE.check(pair)
            return int(height), int(width)
    raise option_error(owner, what, f"{_SIZE.describe()} (H, W), or one for a square", value)
