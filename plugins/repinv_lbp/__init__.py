"""repinv's built-in LBP plugin: VLFeat's uniform local binary patterns (``vl_lbp``), batched in torch.

Registered through the ``repinv`` entry-point group like any third-party plugin::

    [project.entry-points.repinv]
    lbp = "repinv_lbp"

Then ``create_representation("lbp", cell_size=16)`` or ``--rep lbp --rep-opt cell_size=16``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from repinv.registry.hookspecs import hookimpl

from .lbp import DEFAULTS, LBP, create_lbp, lbp_uniform

__all__ = ["LBP", "create_lbp", "lbp_uniform", "register_representations"]


@hookimpl
def register_representations(register: Callable[..., None]) -> None:
    """Register the ``lbp`` family (no variants; option ``cell_size``)."""
    options = ", ".join(f"{key}={json.dumps(value)}" for key, value in DEFAULTS.items())
    register("lbp", create_lbp,
             description=f"LBP, uniform as VLFeat's vl_lbp: 58 dims per cell, floor(H/c) x floor(W/c) cells, "
                         f"not differentiable, options {options}")
