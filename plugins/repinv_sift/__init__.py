"""repinv's built-in sparse SIFT plugin: OpenCV's SIFT keypoints, at most one per cell, as a feature map.

Registered through the ``repinv`` entry-point group like any third-party plugin::

    [project.entry-points.repinv]
    sift = "repinv_sift"

Then ``create_representation("sift", cell_size=4)`` or ``--rep sift --rep-opt cell_size=4``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from repinv.registry.hookspecs import hookimpl

from .sift import DEFAULTS, SIFT, create_sift, sparse_sift

__all__ = ["SIFT", "create_sift", "sparse_sift", "register_representations"]


@hookimpl
def register_representations(register: Callable[..., None]) -> None:
    """Register the ``sift`` family (no variants; options ``cell_size``, ``seed``)."""
    options = ", ".join(f"{key}={json.dumps(value)}" for key, value in DEFAULTS.items())
    register("sift", create_sift,
             description=f"sparse SIFT: OpenCV keypoints, one per d x d cell, 128 descriptor + 5 keypoint values "
                         f"(133) per cell, computed per image on the CPU; options {options}")
