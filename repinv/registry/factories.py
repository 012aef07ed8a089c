"""Creating things by registered name: representations (``create_representation``, ``list_representations``) and
decoders (``build_decoder``, ``decoder_from_config``), as timm's ``create_model`` beside its registry.

Every factory goes through the plugin registry, so a built-in and a third party's plugin are created the same way.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from torch import nn

from repinv.errors import InvalidOption, UnknownRepresentation, UnknownVariant
from repinv.options import size_pair
from repinv.registry.manager import get_registry
from repinv.representations.base import FeatureSpec, Representation, as_feature_spec, split_name

__all__ = ["create_representation", "list_representations", "build_decoder", "decoder_from_config", "decoder_config"]


def create_representation(name: str, **options: Any) -> Representation:
    """Create a representation by name.

    Args:
        name: ``family[:variant]``, e.g. ``"hog"`` or ``"alexnet:fc8"``.
        **options: options the family's factory validates (e.g. ``cell_size=8``).

    Returns:
        The representation, in evaluation mode.

    Raises:
        UnknownRepresentation: no plugin registered ``family``.
        UnknownVariant: the family does not know ``variant`` (the message lists what exists).
        InvalidOption: an option is unknown or has a bad value.
    """

    family, variant = split_name(name)
    entry = get_registry().representations.get(family)
    if entry is None:
        raise UnknownRepresentation(family, get_registry().representations)
    try:
        representation = entry.factory(variant, **options)
    except UnknownVariant as error:
        raise error.with_family(family) from None
    if not isinstance(representation, Representation):
        raise TypeError(f"the factory of {family!r} returned {type(representation).__name__}, not a Representation")
    return representation.eval()


def list_representations(pattern: str = "*") -> list[str]:
    """Names of registered representations matching a glob pattern.

    Families with listed variants contribute ``family:variant`` names, others their family name.

    Args:
        pattern: an ``fnmatch`` pattern, e.g. ``"alex*"``; a name without wildcards lists what starts with it, so
            a family name lists its variants and ``timm:resnet18`` that model's layers.

    Returns:
        The matching names: families in alphabetical order, each family's variants in the order it lists them.
    """

    families = get_registry().representations
    asked_family, asked_variant = split_name(pattern)
    names: list[str] = []
    for family, entry in sorted(families.items()):
        variants = entry.list_variants(asked_variant if family == asked_family else None)
        names.extend(f"{family}:{v}" for v in variants) if variants else names.append(family)
    if asked_family in families and not any(c in pattern for c in "*?["):
        pattern = f"{pattern}*"
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def build_decoder(spec: FeatureSpec, image_size: tuple[int, int] | int, decoder: str | None = None,
                  output_size: tuple[int, int] | int | None = None, **options: Any) -> nn.Module:
    """Build a decoder by registered name, choosing the architecture from the feature shape when none is named.

    Args:
        spec: the features it will take.
        image_size: ``(H, W)`` of the images the features come from (an int for a square).
        decoder: a registered decoder name; ``None`` picks ``"conv"`` for a map and ``"fc"`` for a vector.
        output_size: ``(H, W)`` of the predicted images; ``None`` means ``image_size``.
        **options: passed to the decoder's builder, which validates them.

    Returns:
        The decoder, whose ``config()`` rebuilds it with :func:`decoder_from_config`.

    Raises:
        UnknownName: no plugin registered ``decoder``.
        InvalidOption: a bad size, an unknown option or a bad value.

    Shape:
        input ``(B, *spec.shape)``; output ``(B, 3, *output_size)``.
    """

    spec = as_feature_spec(spec)
    image = size_pair(image_size, "image_size")
    output = image if output_size is None else size_pair(output_size, "output_size")
    name = decoder if decoder is not None else ("conv" if spec.kind == "map" else "fc")
    module = get_registry().get("decoder", name).obj(spec, output, **options)
    if not isinstance(module, nn.Module) or not callable(getattr(module, "config", None)):
        raise TypeError(f"the builder of decoder {name!r} must return an nn.Module with a config() method, "
                        f"got {type(module).__name__}")
    return module


def decoder_from_config(config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a decoder from its ``config()``, through the registry (so third-party decoders work too).

    Args:
        config: ``{"name", "spec", "output_size", "options"}`` as :meth:`Decoder.config` returns it (possibly after
            a JSON round trip); a third-party decoder's ``config()`` must use the same keys.

    Returns:
        A freshly initialized decoder with the same architecture (same state-dict keys and shapes).

    Raises:
        InvalidOption: a config without these keys.
        UnknownName: no plugin registered its name.
    """

    try:
        name, shape, output = config["name"], config["spec"], config["output_size"]
        options = dict(config.get("options") or {})
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidOption(f"a decoder config needs the keys name, spec, output_size and options; got "
                            f"{config!r} (missing {error})") from None
    decoder: nn.Module = get_registry().get("decoder", name).obj(FeatureSpec(tuple(shape)),
                                                                 size_pair(output, "output_size"), **options)
    return decoder


def decoder_config(decoder: nn.Module) -> dict[str, Any]:
    """A decoder's ``config()``: what :func:`decoder_from_config` rebuilds it from (every registered builder's
    module has one; :func:`build_decoder` checks it)."""
    config: dict[str, Any] = decoder.config()  # type: ignore[operator]  # nn.Module's typing hides the method
    return config
