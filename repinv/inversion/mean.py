"""The mean training image as an inversion method: the paper's baseline, the same image whatever the features."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from repinv.errors import CheckpointError
from repinv.files import load_tensors

__all__ = ["mean_image_of"]


def mean_image_of(run: str | Path) -> Tensor:
    """The mean training image stored in a run directory (decoder or linear).

    Raises:
        CheckpointError: the run has none.
    """
    path = Path(run) / "mean_image.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{run} has no mean_image.safetensors: the mean-image baseline needs a run trained "
                              f"with this version of repinv (or a linear baseline)")
    return load_tensors(path)["mean_image"]
