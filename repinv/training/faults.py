"""What training does about faults: a kill early in a run, a full disk, and the kill points tests use.

* The first checkpoint comes at most :data:`FIRST_CHECKPOINT_SECONDS` of training after a run starts; a run killed
  before it has its settings but no checkpoint, and ``--resume`` starts it again from step 0, saying so.
* A full disk while a checkpoint is written becomes one clear error; the atomic writes keep the previous files.
* :data:`FAULT_VARIABLE` names a point where a test kills the training process, to check what a kill leaves.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from repinv.errors import CheckpointError
from repinv.rundir import RunDir

__all__ = ["FIRST_CHECKPOINT_SECONDS", "FAULT_VARIABLE", "RunWarning", "fault_point", "disk_full_is_one_line",
           "settings_to_restart"]


#: The longest a run trains before its first checkpoint, so a kill early in a run loses at most this much work.
FIRST_CHECKPOINT_SECONDS = 30.0


#: Environment variable naming a point where a test kills the training process (SIGKILL): ``after-step:N`` or
#: ``checkpoint-write:N`` (step N's checkpoint, after the model files, before the resume state). Unset in normal use.
FAULT_VARIABLE = "REPINV_TEST_FAULT"


class RunWarning(UserWarning):
    """Something about a run the user should know, that does not stop it (e.g. a restart from step 0)."""


def fault_point(name: str) -> None:
    """Kill this process here when a test asked for it (see :data:`FAULT_VARIABLE`)."""
    if os.environ.get(FAULT_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def disk_full_is_one_line(run: Path, what: str) -> Iterator[None]:
    """A full disk while writing ``what`` becomes one clear error; the atomic writes keep the previous files."""
    try:
        yield
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise CheckpointError(f"the disk is full: could not write {what} in {run}; the previous checkpoint is kept. "
                              f"Free some space, then continue with `repinv train --resume {run}`") from None


def settings_to_restart(folder: RunDir) -> dict[str, Any]:
    """The settings of a run stopped before its first checkpoint, which starts again from step 0 (saying so)."""
    settings = folder.read_settings()
    if settings is None:
        raise CheckpointError(f"{folder} holds no repinv run (neither settings nor a checkpoint); start one with "
                              f"`repinv train --out {folder}`")
    warnings.warn(f"{folder} has no checkpoint yet (it stopped before its first one, at most "
                  f"{FIRST_CHECKPOINT_SECONDS:.0f} s into training): starting it again from step 0", RunWarning,
                  stacklevel=3)
    return settings
