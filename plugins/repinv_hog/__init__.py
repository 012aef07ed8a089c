"""repinv's built-in HOG plugin: the UoCTTI variant of VLFeat's ``vl_hog``, batched in torch.

Registered through the ``repinv`` entry-point group like any third-party plugin::

    [project.entry-points.repinv]
    hog = "repinv_hog"

Then ``create_representation("hog", cell_size=8)`` or ``--rep hog --rep-opt cell_size=8``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from repinv.registry.hookspecs import hookimpl

from .hog import DEFAULTS, HOG, create_hog, hog_uoctti

__all__ = ["HOG", "create_hog", "hog_uoctti", "register_representations"]


@hookimpl
def register_representations(register: Callable[..., None]) -> None:
    """Register the ``hog`` family (no variants; options ``cell_size``, ``orientations``, ``bilinear_orientations``)."""
    options = ", ".join(f"{key}={json.dumps(value)}" for key, value in DEFAULTS.items())
    register("hog", create_hog,
             description=f"HOG, UoCTTI variant as VLFeat's vl_hog: 3n+4 (31) dims per cell, options {options}")
