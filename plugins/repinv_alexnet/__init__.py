"""repinv's built-in AlexNet plugin: layers ``alexnet:conv1`` … ``alexnet:fc8`` of torchvision's AlexNet.

Registered through the ``repinv`` entry-point group like any third-party plugin::

    [project.entry-points.repinv]
    alexnet = "repinv_alexnet"

Then ``create_representation("alexnet:fc8", weights="none")`` or ``--rep alexnet:fc8 --rep-opt weights=none``. Raw
module names work as layers too (``alexnet:features.7``). torchvision's AlexNet is not the paper's CaffeNet (see
:mod:`repinv_alexnet.alexnet`).
"""

from __future__ import annotations

from collections.abc import Callable

from repinv.registry.hookspecs import hookimpl

from .alexnet import DEFAULTS, LAYERS, AlexNetLayer, create_alexnet

__all__ = ["AlexNetLayer", "LAYERS", "create_alexnet", "register_representations"]


def _variants() -> list[str]:
    """The paper's eight layers; raw module names are accepted but not listed."""
    return list(LAYERS)


@hookimpl
def register_representations(register: Callable[..., None]) -> None:
    """Register the ``alexnet`` family (variants ``conv1`` … ``fc8``; options ``weights``, ``seed``)."""
    register("alexnet", create_alexnet, variants=_variants,
             description=f"torchvision's AlexNet (not CaffeNet) at 224x224, layer outputs as in the paper; "
                         f"options weights={DEFAULTS['weights']}|none|PATH, seed={DEFAULTS['seed']}")
