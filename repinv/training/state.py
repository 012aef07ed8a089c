"""An optimizer's state as safetensors tensors plus JSON, so a run's resume state holds no pickle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from repinv.errors import CheckpointError

__all__ = ["optimizer_to_tensors", "optimizer_from_tensors"]


def optimizer_to_tensors(optimizer: torch.optim.Optimizer, prefix: str = "optimizer.") -> tuple[
        dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer's state dict into tensors and a JSON-able remainder (no pickles)."""
    state = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"{prefix}{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: Mapping[str, Tensor], saved: dict[str, Any],
                           prefix: str = "optimizer.") -> None:
    """Restore an optimizer from :func:`optimizer_to_tensors`'s output."""
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        if name.startswith(prefix):
            index, key = name[len(prefix):].split(".", 1)
            state.setdefault(int(index), {})[key] = tensor
    for index, values in saved["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"the optimizer state does not match this run's parameters ({error})") from None
