"""The core's own plugin: registers the built-in decoders and perturbations through the public hooks.

The plugin manager registers this module directly, before any entry point, so it always loads.
"""

from __future__ import annotations

from collections.abc import Callable

from . import decoders, perturbations
from .hookspecs import hookimpl


@hookimpl
def register_decoders(register: Callable[..., None]) -> None:
    """The paper's two decoder families: ``conv`` for feature maps, ``fc`` for feature vectors."""
    register("conv", decoders.conv_decoder, description="convolutions, optional contraction, stride-2 "
                                                        "up-convolutions (for feature maps)")
    register("fc", decoders.fc_decoder, description="three fully connected layers, then up-convolutions "
                                                    "(for feature vectors; the paper's Table 1)")


@hookimpl
def register_perturbations(register: Callable[..., None]) -> None:
    """The design's perturbations for ``repinv analyze`` (``binarize``, ``dropout``, …; see repinv.perturbations)."""
    for name, (fn, description) in perturbations.BUILTINS.items():
        register(name, fn, description=description)
