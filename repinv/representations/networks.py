"""Layers of pretrained networks as representations: shared by the AlexNet and timm plugins (and third parties).

* :func:`capture` takes one module's output with a temporary forward hook and stops the forward pass there, so
  the model stays unmodified and no later layer runs; :func:`capture_many` takes several modules' outputs from one
  pass, stopped once the last of them has run; :func:`record_outputs` takes them from a computation that runs to
  its end (a network's head after its body);
* :func:`read_state_dict` and :func:`check_state_dict` read a local weights file safely and refuse one that does
  not fit, naming the keys (a file that lacks only BatchNorm's ``num_batches_tracked`` counters fits);
* :class:`DeferredWeights` lets a representation load its weights on first use (``forward``, ``state_dict``,
  :meth:`~DeferredWeights.load_weights`), so listing layers and shapes never downloads anything, and weights that
  arrive with a state dict (a run's saved encoder) cancel the pending load.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar, cast

import torch
from torch import Tensor, nn

from repinv.errors import InvalidOption, ShapeError

__all__ = ["capture", "capture_many", "record_outputs", "same_network", "read_state_dict",
           "check_state_dict", "parse_weights", "WEIGHT_SUFFIXES", "DeferredWeights",
           "describe_error"]


T = TypeVar("T")


class _Stop(Exception):
    """Raised by the capture hook: the layer's output is known, the rest of the forward pass is not needed."""


def capture(model: nn.Module, module: nn.Module, inputs: Tensor) -> Any:
    """Run ``model`` on ``inputs`` until ``module`` has produced its output, and return that output.

    A temporary forward hook takes the output and raises a private exception, so the layers after ``module`` never
    run and the model is left exactly as it was. A module called several times in one pass gives its first output.

    Args:
        model: the network.
        module: one of its submodules.
        inputs: the network's input.

    Returns:
        What ``module`` returned (a tensor, or whatever the module returns), part of the autograd graph.

    Raises:
        ShapeError: the forward pass never called ``module``.
    """
    captured: list[Any] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        captured.append(output)
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        model(inputs)
    except _Stop:
        return captured[0]
    finally:
        handle.remove()
    raise ShapeError("the forward pass never reached the requested module (this model does not use it)")


def capture_many(model: nn.Module, modules: Sequence[nn.Module], inputs: Tensor) -> list[Any]:
    """Run ``model`` on ``inputs`` once, until every module of ``modules`` has produced its output, and return them.

    As :func:`capture`, with temporary forward hooks on every module: the pass stops once all have run (nothing
    after the last is computed), and the model is left exactly as it was. A module called several times in one pass
    gives its first output; a module listed twice gives the same output twice.

    Args:
        model: the network.
        modules: some of its submodules.
        inputs: the network's input.

    Returns:
        What each module returned, in the order of ``modules``.

    Raises:
        ShapeError: the forward pass never called some of the modules (named).
    """
    return _recording(model, modules, lambda: model(inputs), stop=True)[1]


def record_outputs(model: nn.Module, modules: Sequence[nn.Module], compute: Callable[[], T]) -> tuple[T, list[Any]]:
    """Call ``compute`` (some forward computation of ``model``) once, with temporary forward hooks taking each
    module's first output; unlike :func:`capture_many`, nothing is cut short, so ``compute`` can also return what
    comes after the modules (a network's head).

    Args:
        model: the network (names the modules in errors).
        modules: some of its submodules.
        compute: runs the forward computation.

    Returns:
        What ``compute`` returned, and what each module returned, in the order of ``modules``.

    Raises:
        ShapeError: ``compute`` never called some of the modules (named).
    """
    result, outputs = _recording(model, modules, compute, stop=False)
    return cast(T, result), outputs  # not cut short, so compute returned


def _recording(model: nn.Module, modules: Sequence[nn.Module], compute: Callable[[], T],
               stop: bool) -> tuple[T | None, list[Any]]:
    modules = list(modules)
    unique = list({id(module): module for module in modules}.values())
    captured: dict[int, Any] = {}

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        captured.setdefault(id(module), output)
        if stop and len(captured) == len(unique):
            raise _Stop

    handles = [module.register_forward_hook(hook) for module in unique]
    result = None
    try:
        if unique or not stop:
            result = compute()
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [module for module in unique if id(module) not in captured]
    if missing:
        names = {id(module): name for name, module in model.named_modules()}
        described = ", ".join(names.get(id(module)) or type(module).__name__ for module in missing)
        raise ShapeError(f"the forward pass never reached module(s) {described} (this model does not use them)")
    return result, [captured[id(module)] for module in modules]


def same_network(first: nn.Module, second: nn.Module) -> bool:
    """Whether two models compute the same thing: the same class, mode, parameters and buffers (names, devices,
    dtypes, layouts and values), so one forward pass of ``first`` stands for one of ``second``."""
    if first is second:
        return True
    if type(first) is not type(second) or \
            [m.training for m in first.modules()] != [m.training for m in second.modules()]:
        return False
    ours, theirs = nn.Module.state_dict(first, keep_vars=True), nn.Module.state_dict(second, keep_vars=True)
    if list(ours) != list(theirs):
        return False
    for key, tensor in ours.items():
        other = theirs[key]
        if (tensor.device, tensor.dtype, tensor.shape, tensor.stride()) != \
                (other.device, other.dtype, other.shape, other.stride()):
            return False
        if tensor.data_ptr() != other.data_ptr() and not torch.equal(tensor, other):
            return False
    return True


#: File suffixes the ``weights`` option of a network layer reads as a local weights file.
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def parse_weights(value: Any, family: str, named: str, key_format: str = "") -> str:
    """A network layer's ``weights`` option: its named source, ``none``, or an absolute weights-file path.

    Args:
        value: the option as given (``None`` means ``none``).
        family: the representation family, for the error (``"alexnet"``).
        named: the family's named source (``"imagenet"``, ``"pretrained"``).
        key_format: words on the file's key format, for the error (e.g. ``" in timm's key format"``).

    Returns:
        ``named``, ``"none"``, or the path made absolute, so the config rebuilds the representation from any
        working directory (the file is read when the weights are needed).

    Raises:
        InvalidOption: anything else.
    """
    if value is None:
        return "none"
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if text.lower() in (named, "none"):
            return text.lower()
        if Path(text).suffix.lower() in WEIGHT_SUFFIXES:
            return str(Path(text).expanduser().absolute())
    raise InvalidOption(f"{family} option weights must be {named}, none, or the path of a .safetensors or .pth "
                        f"file{key_format}, got {value!r}")


def read_state_dict(path: str | os.PathLike[str], what: str = "weights file") -> dict[str, Tensor]:
    """Read a state dict from a local ``.safetensors`` file or a ``.pth`` file (``torch.load(weights_only=True)``).

    A checkpoint that wraps the weights (``{"state_dict": …}`` or ``{"model": …}``, as training scripts write them)
    is unwrapped, and a ``module.`` prefix on every key (DistributedDataParallel) is removed.

    Args:
        path: the file.
        what: how to name it in errors.

    Returns:
        Parameter and buffer names → tensors, on the CPU.

    Raises:
        InvalidOption: the file is missing, unreadable, or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidOption(f"{what} {str(path)!r} not found")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(path, device="cpu")
        else:
            # weights_only refuses pickled code; the file comes from outside repinv.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to read the file is one message: corrupt, truncated, not a state dict
        reason = describe_error(error)
        raise InvalidOption(f"cannot read {what} {str(path)!r}: {type(error).__name__}: {reason}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise InvalidOption(f"{what} {str(path)!r} does not hold a state dict (parameter names -> tensors)")
    tensors: dict[str, Tensor] = {str(k): v for k, v in state.items()}
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def describe_error(error: BaseException, limit: int = 160) -> str:
    """An error's first line, shortened: messages here are one line."""
    line = (str(error).strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


def _names(keys: list[str], limit: int = 6) -> str:
    return ", ".join(keys[:limit]) + (f", … ({len(keys) - limit} more)" if len(keys) > limit else "")


#: Buffers that count rather than weigh (BatchNorm's batches seen): a weights file may lack them.
_COUNTERS = ("num_batches_tracked",)


def _is_counter(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in _COUNTERS


def check_state_dict(model: nn.Module, state: Mapping[str, Tensor], what: str) -> dict[str, Tensor]:
    """Refuse a state dict whose keys or shapes differ from ``model``'s, naming the keys that differ.

    A state dict that lacks only counters (BatchNorm's ``num_batches_tracked``, which converted checkpoints often
    drop and PyTorch's own ``load_state_dict`` accepts) is not refused: the counters are taken from ``model``.

    Args:
        model: the module the state dict is meant for.
        state: the state dict.
        what: how to name its source in the error (e.g. ``"weights file 'x.pth'"``).

    Returns:
        ``state`` with any missing counters filled in from ``model``: what to load.

    Raises:
        InvalidOption: missing keys, unexpected keys or shape differences (one line naming them).
    """
    expected = nn.Module.state_dict(model)  # the plain method: a representation's own would load its weights first
    counters = [k for k in expected if k not in state and _is_counter(k)]
    missing = [k for k in expected if k not in state and not _is_counter(k)]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} instead of {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = ([f"missing keys {_names(missing)}"] if missing else []) + \
               ([f"unexpected keys {_names(unexpected)}"] if unexpected else []) + \
               ([f"wrong shapes {_names(shapes, 3)}"] if shapes else [])
    if problems:
        raise InvalidOption(f"{what} does not match {type(model).__name__}: {'; '.join(problems)}")
    return {**dict(state), **{k: expected[k].detach().clone() for k in counters}}


class DeferredWeights(nn.Module, ABC):
    """A module whose network (``self.model``) gets its weights on first use, from a source named in its options.

    Subclasses call :meth:`defer_weights` in ``__init__`` (after building ``self.model``) and implement
    :meth:`fetch_weights`; list it before :class:`~repinv.Representation` in the bases.
    """

    model: nn.Module

    def defer_weights(self, source: str | None, *, rebuildable: bool) -> None:
        """Remember where the weights come from.

        Args:
            source: what :meth:`fetch_weights` reads (``None``: the model keeps the weights it has).
            rebuildable: whether the options alone give these weights again anywhere (a named, downloadable
                source); otherwise (random initialization, a local file) a run saves them
                (:attr:`~repinv.Representation.weights_from_options`).
        """
        self._pending = source
        self._rebuildable = rebuildable
        # Weights given through load_state_dict (e.g. a run's saved encoder) replace the pending ones.
        self.register_load_state_dict_post_hook(_weights_arrived)  # type: ignore[no-untyped-call]  # torch leaves it untyped

    @abstractmethod
    def fetch_weights(self, source: str) -> tuple[dict[str, Tensor], str]:
        """The state dict of ``self.model`` from ``source``, and how to name it in errors."""

    @property
    def weights_from_options(self) -> bool:
        """Whether the options alone rebuild the weights (see :meth:`defer_weights`)."""
        return self._rebuildable

    @property
    def weights_pending(self) -> bool:
        """Whether the weights are still to be loaded (on the first forward or state_dict)."""
        return self._pending is not None

    def load_weights(self) -> Self:
        """Load the weights now, if not yet done (the first ``forward`` or :meth:`state_dict` does it anyway).

        Returns:
            ``self``.

        Raises:
            WeightsUnavailable: named weights could not be downloaded.
            InvalidOption: a local weights file is missing, unreadable, or does not match the model (keys named).
        """
        if self._pending is None:
            return self
        state, what = self.fetch_weights(self._pending)
        state = check_state_dict(self.model, state, what)  # with BatchNorm counters filled when the file lacks them
        # Out of inference mode: the parameters must stay usable by autograd (fine-tuning) afterwards.
        with torch.inference_mode(False), torch.no_grad():
            self.model.load_state_dict(state)
        self._pending = None
        return self

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]  # passes all on
        """The module's state dict, after loading pending weights (so it never holds placeholder weights)."""
        self.load_weights()
        return super().state_dict(*args, **kwargs)


def _weights_arrived(module: nn.Module, _incompatible_keys: Any) -> None:
    """``load_state_dict`` post-hook of :class:`DeferredWeights`: nothing is pending once weights came with it."""
    module._pending = None  # type: ignore[assignment]
