"""``torch.compile`` for the decoder's training step, with a clean fallback to eager execution.

On a CPU, TorchInductor generates C++ and needs a compiler at run time; a machine without one, or a model or torch
version that fails to compile, must still train. :class:`CompiledOrEager` tries the compiled module and, on the
first failure, says so in one warning line and runs the eager module from then on: the same parameters, so nothing
is lost. Compilation happens inside the first steps, so a run under ``--time-budget`` counts its cost.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

__all__ = ["CompiledOrEager", "CompileWarning"]


class CompileWarning(UserWarning):
    """``torch.compile`` failed; training goes on without it."""


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


class CompiledOrEager(nn.Module):
    """A module run through ``torch.compile`` until compiling fails, then as it is.

    Args:
        module: the module to compile; it stays the owner of the parameters (save and load it, not this wrapper).

    Attributes:
        module: the eager module.
        compiled: whether calls still go through the compiled module.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self._compiled_module = torch.compile(module)
        self.compiled = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled:
            try:
                return self._compiled_module(*args, **kwargs)
            except Exception as error:  # any compiler failure; an error of the inputs recurs eagerly below
                self.compiled = False
                warnings.warn(f"torch.compile failed ({_first_line(error)}); training without it "
                              "(--no-compile skips the attempt)", CompileWarning, stacklevel=2)
        return self.module(*args, **kwargs)
