"""repinv's built-in timm plugin: any layer of any timm model, ``timm:<model>:<layer>``.

Registered through the ``repinv`` entry-point group like any third-party plugin::

    [project.entry-points.repinv]
    timm = "repinv_timm"

Then ``create_representation("timm:resnet18:layer3", weights="none")`` or ``--rep timm:vit_tiny_patch16_224:blocks.5
--rep-opt weights=none``. ``pooled`` and ``logits`` name the head's pre-logits features and the final output.
"""

from __future__ import annotations

from collections.abc import Callable

from repinv.registry.hookspecs import hookimpl

from .layers import DEFAULTS, EXAMPLE_MODEL, TimmLayer, create_timm, timm_variants

__all__ = ["TimmLayer", "create_timm", "timm_variants", "register_representations"]


@hookimpl
def register_representations(register: Callable[..., None]) -> None:
    """Register the ``timm`` family (variants ``<model>:<layer>``; options ``weights``, ``seed``, ``layout``)."""
    register("timm", create_timm, variants=timm_variants,
             description=f"any timm model, timm:MODEL:LAYER (a module, pooled or logits; {EXAMPLE_MODEL} shown as an "
                         f"example); options weights={DEFAULTS['weights']}|none|PATH, seed, layout, tag")
