"""Files repinv writes: atomically (a temporary sibling, then a rename), as safetensors with JSON metadata or as
JSON, never as pickles; and read back strictly, with errors that say what differs.

The run directory's layout is :mod:`repinv.rundir`'s; this module knows no file names.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from repinv.errors import CheckpointError

__all__ = [
    "METADATA_KEY",
    "atomic_write",
    "exclusive_lock",
    "read_log",
    "save_tensors",
    "read_metadata",
    "load_tensors",
    "load_into",
    "optimizer_to_tensors",
    "optimizer_from_tensors",
    "under_prefix",
]

METADATA_KEY = "repinv"


def _process_umask() -> int:
    mask = os.umask(0o022)  # reading the mask means setting it; put it back at once
    os.umask(mask)
    return mask


#: The mode a plain ``open()`` would give a new file: temporary files are private (0600) until renamed into place.
_FILE_MODE = 0o666 & ~_process_umask()


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write a file through a temporary sibling, then rename it into place.

    Args:
        path: the final path.
        write: called with the temporary path; must create the file there.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, _FILE_MODE)  # others may read a shared run directory, as with any file written there
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def exclusive_lock(path: Path, busy: Callable[[str], Exception], unwritable: Callable[[str], Exception]
                   ) -> Iterator[None]:
    """Hold an exclusive, non-blocking ``flock`` on ``path`` (created with its folder if needed) while the block runs,
    with this process's id written into it for whoever finds it taken.

    The operating system releases the lock when the file is closed: at the end of the block, and when the process
    exits or is killed, so a killed holder never leaves a stale lock. Any other open of the file (another process,
    or this one again) is refused while it is held. The file itself is left in place (emptied): removing a lock file
    would let two processes lock two different files of the same name.

    Args:
        path: the lock file.
        busy: makes the exception raised when another holds the lock, from its holder (``"pid 1234"``).
        unwritable: makes the exception raised when the file cannot be created, from the reason.

    Raises:
        whatever ``busy`` or ``unwritable`` make.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
    except OSError as error:
        raise unwritable(error.strerror or str(error)) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES):
                holder = os.pread(handle, 64, 0).decode("ascii", "replace").strip()
                raise busy(f"pid {holder}" if holder.isdigit() else "pid unknown") from None
            # A file system without locks (some network mounts): run unprotected rather than not at all.
            warnings.warn(f"cannot lock {path} ({error.strerror}); nothing stops a second process from using "
                          f"{path.parent} at the same time", stacklevel=3)
            locked = False
        if locked:
            os.ftruncate(handle, 0)
            os.pwrite(handle, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield
        finally:
            if locked:
                os.ftruncate(handle, 0)  # still held: nobody reads a pid that is gone
    finally:
        os.close(handle)  # releases the lock


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log such as a run's training log, skipping any line that does not parse (a run
    killed while writing leaves its last line cut short)."""
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically."""
    atomic_write(path, lambda p: p.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n"))


def save_tensors(path: Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, Any] | None = None) -> None:
    """Save tensors to a safetensors file atomically, with ``metadata`` as one JSON string under ``repinv``."""
    prepared = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    header = {METADATA_KEY: json.dumps(metadata, sort_keys=True)} if metadata is not None else None
    atomic_write(path, lambda p: save_file(prepared, str(p), metadata=header))


def read_metadata(path: Path) -> dict[str, Any]:
    """The ``repinv`` metadata of a safetensors file.

    Raises:
        CheckpointError: the file is missing, not safetensors, or has no repinv metadata.
    """
    if not path.is_file():
        raise CheckpointError(f"{path} not found: is this a repinv run directory?")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error})") from None
    if METADATA_KEY not in header:
        raise CheckpointError(f"{path} has no repinv metadata: it was not written by repinv")
    try:
        metadata = json.loads(header[METADATA_KEY])
    except ValueError as error:
        raise CheckpointError(f"{path} has damaged repinv metadata (not JSON: {error}): it was edited or not "
                              "written by repinv") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path} has damaged repinv metadata (a JSON {type(metadata).__name__}, not an "
                              "object): it was edited or not written by repinv")
    return metadata


def load_tensors(path: Path, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """Load every tensor of a safetensors file (raises :class:`CheckpointError` when unreadable)."""
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error})") from None


def load_into(module: nn.Module, tensors: Mapping[str, Tensor], what: str) -> None:
    """Load a state dict, refusing any difference with a message that names it.

    Args:
        module: the freshly built module.
        tensors: the saved state dict.
        what: how to name the module in the error (e.g. ``"decoder in runs/hog"``).

    Raises:
        CheckpointError: missing keys, unexpected keys or shape differences.
    """
    expected = nn.Module.state_dict(module)  # not module.state_dict(): that may load deferred weights first
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = [f"{k}: saved {tuple(tensors[k].shape)}, built {tuple(v.shape)}" for k, v in expected.items()
              if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:5])}" + (" …" if len(missing) > 5 else ""))
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:5])}" + (" …" if len(unexpected) > 5 else ""))
    if shapes:
        problems.append("shape mismatch " + "; ".join(shapes[:3]) + (" …" if len(shapes) > 3 else ""))
    if problems:
        raise CheckpointError(f"the {what} does not match the architecture rebuilt from its metadata: "
                              + " | ".join(problems))
    module.load_state_dict(dict(tensors))


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


def under_prefix(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors whose names start with ``prefix``, named without it (one part of a saved state)."""
    return {name[len(prefix):]: tensor for name, tensor in tensors.items() if name.startswith(prefix)}
