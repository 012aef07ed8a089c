"""The run directory: the one place that knows its file names and how each file is read and written.

A run directory holds:

* ``decoder.safetensors`` — decoder weights; its metadata key ``repinv`` is one JSON string describing the run
  (version, representation name and options, decoder name and config, image and output size, training config,
  step, metrics), so the file alone rebuilds the model;
* ``encoder.safetensors`` — representation weights, when its options do not rebuild them
  (:attr:`repinv.Representation.weights_from_options`) or training fine-tuned them;
* ``mean_image.safetensors`` — the mean training image, the baseline scored beside the decoder;
* ``state.safetensors`` + ``state.json`` — what ``--resume`` continues from: model and optimizer tensors and RNG
  states in one file whose metadata holds step and data position (so a kill can never pair tensors of one step
  with counters of another); ``state.json`` is a readable copy;
* ``config.json`` (the training settings), ``metrics.jsonl`` (the training log), ``samples/step-N.png``,
  ``best/`` (the best validation checkpoint, same layout);
* ``evaluation.json``, ``evaluation.png`` and ``analysis/``: what ``repinv evaluate`` and ``repinv analyze`` write
  there by default.

A linear baseline's run directory (``repinv fit-linear``) holds ``linear.safetensors`` (weights, metadata as
above) and ``mean_image.safetensors``. Every write is atomic (:mod:`repinv.files`); nothing here is a pickle.

The metadata's ``run_format`` (:attr:`RunDir.FORMAT`) numbers this layout; a run from a newer repinv is refused
with both numbers, a run without the key is format 1. ``.lock`` is the file :meth:`RunDir.lock` holds while a
process trains into the directory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from repinv.errors import CheckpointError
from repinv.files import atomic_write, exclusive_lock, load_tensors, read_log, read_metadata, save_tensors, write_json

__all__ = ["RunDir"]


class RunDir:
    """A run directory (a trained decoder's, or a linear baseline's), by path.

    Args:
        path: the directory; nothing is read or created until a method needs it.
    """

    #: The run-directory format this repinv writes and the newest it reads (metadata key ``run_format``; a run
    #: without it is format 1). Bumped when a change to the layout or the metadata would mislead an older reader.
    FORMAT = 1
    FORMAT_KEY = "run_format"

    _DECODER, _ENCODER, _MEAN_IMAGE = "decoder.safetensors", "encoder.safetensors", "mean_image.safetensors"
    _STATE, _STATE_COPY, _CONFIG = "state.safetensors", "state.json", "config.json"
    _LOG, _SAMPLES, _BEST, _LINEAR = "metrics.jsonl", "samples", "best", "linear.safetensors"
    _EVALUATION, _EVALUATION_GRID, _ANALYSIS = "evaluation.json", "evaluation.png", "analysis"
    _LOCK = ".lock"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ------------------------------------------------------------------------------------------------- places
    @property
    def best(self) -> RunDir:
        """The best validation checkpoint, a run directory of its own."""
        return RunDir(self.path / self._BEST)

    @property
    def evaluation_file(self) -> Path:
        """Where ``repinv evaluate`` writes its JSON by default."""
        return self.path / self._EVALUATION

    @property
    def evaluation_grid(self) -> Path:
        """Where ``repinv evaluate`` writes its grid by default."""
        return self.path / self._EVALUATION_GRID

    @property
    def analysis_folder(self) -> Path:
        """Where ``repinv analyze`` writes by default."""
        return self.path / self._ANALYSIS

    def sample_grid(self, step: int) -> Path:
        """The reconstruction grid written at ``step``."""
        return self.path / self._SAMPLES / f"step-{step}.png"

    def sample_grids(self) -> list[Path]:
        """Every sample grid, in step order."""
        def step_of(path: Path) -> int:
            found = re.search(r"(\d+)$", path.stem)
            return int(found.group(1)) if found else -1

        return sorted((self.path / self._SAMPLES).glob("step-*.png"), key=step_of)

    def result_files(self) -> list[Path]:
        """The result JSON files in the folder (evaluation, compare, analyze …), not its own settings."""
        return sorted(p for p in self.path.glob("*.json") if p.name not in (self._CONFIG, self._STATE_COPY))

    # ------------------------------------------------------------------------------------------- what it holds
    def holds_decoder(self) -> bool:
        """Whether it holds a trained decoder."""
        return (self.path / self._DECODER).is_file()

    def holds_linear(self) -> bool:
        """Whether it holds a linear baseline."""
        return (self.path / self._LINEAR).is_file()

    def holds_state(self) -> bool:
        """Whether it holds a resume state (a checkpoint)."""
        return (self.path / self._STATE).is_file()

    def holds_encoder(self) -> bool:
        """Whether it holds the representation's weights."""
        return (self.path / self._ENCODER).is_file()

    def holds_log(self) -> bool:
        """Whether it has a training log."""
        return (self.path / self._LOG).is_file()

    def require(self) -> RunDir:
        """``self``, after checking that the directory exists.

        Raises:
            CheckpointError: it does not.
        """
        if not self.path.is_dir():
            raise CheckpointError(f"run directory {str(self.path)!r} not found")
        return self

    # ------------------------------------------------------------------------------------------------ reading
    def metadata(self) -> dict[str, Any]:
        """What the decoder (or, in a linear baseline's run, the linear map) records about the run.

        Raises:
            CheckpointError: neither file is there or readable.
        """
        path = self.path / (self._LINEAR if self.holds_linear() and not self.holds_decoder() else self._DECODER)
        return self._read_metadata(path)

    def _read_metadata(self, path: Path) -> dict[str, Any]:
        """A file's repinv metadata, refused when a newer repinv wrote it (see :attr:`FORMAT`)."""
        metadata = read_metadata(path)
        written = metadata.get(self.FORMAT_KEY, 1)
        if isinstance(written, bool) or not isinstance(written, int) or written < 1:
            raise CheckpointError(f"{path} has run format {written!r}, which is not a format number: it was edited "
                                  "or not written by repinv")
        if written > self.FORMAT:
            raise CheckpointError(f"{self.path} was written by a newer repinv (run format {written}; this repinv "
                                  f"reads up to {self.FORMAT}): upgrade repinv")
        return metadata

    def identity(self) -> tuple[dict[str, Any], tuple[int, int]]:
        """The representation (``{"name", "options"}``) and image size the run records.

        Raises:
            CheckpointError: the metadata lacks them.
        """
        meta = self.metadata()
        try:
            return meta["representation"], (int(meta["image_size"][0]), int(meta["image_size"][1]))
        except (KeyError, TypeError, IndexError) as error:
            raise CheckpointError(f"the metadata in {self.path} lacks {error}") from None

    def representation_name(self) -> str:
        """The name of the representation the run inverts (``"?"`` when the metadata does not say)."""
        return str(self.metadata().get("representation", {}).get("name", "?"))

    def read_decoder(self, device: torch.device | str = "cpu") -> dict[str, Tensor]:
        """The decoder's weights."""
        return load_tensors(self.path / self._DECODER, device)

    def read_encoder(self, device: torch.device | str = "cpu") -> dict[str, Tensor] | None:
        """The representation's weights, when the run holds them."""
        return load_tensors(self.path / self._ENCODER, device) if self.holds_encoder() else None

    def read_linear(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """A linear baseline's metadata and tensors.

        Raises:
            CheckpointError: the run holds a decoder instead, or nothing readable.
        """
        if not self.holds_linear() and self.holds_decoder():
            raise CheckpointError(f"{self.path} holds a decoder, not a linear baseline: use decoder:{self.path}")
        path = self.path / self._LINEAR
        return self._read_metadata(path), load_tensors(path)

    def read_mean_image(self) -> Tensor | None:
        """The mean training image ``(3, H, W)``, when the run holds one."""
        path = self.path / self._MEAN_IMAGE
        return load_tensors(path)["mean_image"] if path.is_file() else None

    def require_mean_image(self) -> Tensor:
        """The mean training image.

        Raises:
            CheckpointError: the run has none.
        """
        mean_image = self.read_mean_image()
        if mean_image is None:
            raise CheckpointError(f"{self.path} has no mean image: the mean-image baseline needs a run trained with "
                                  "this version of repinv (or a linear baseline)")
        return mean_image

    def read_state(self, device: torch.device | str = "cpu") -> tuple[dict[str, Any], dict[str, Tensor]]:
        """The resume state: its counters and settings, and its tensors."""
        path = self.path / self._STATE
        return self._read_metadata(path), load_tensors(path, device)

    def training_settings(self) -> dict[str, Any]:
        """The settings the run's last checkpoint was trained with."""
        path = self.path / self._STATE
        settings = self._read_metadata(path).get("training")
        if not isinstance(settings, dict):
            raise CheckpointError(f"{path} lacks the training settings: it was edited or not written by repinv")
        return settings

    def read_settings(self) -> dict[str, Any] | None:
        """``config.json``: the settings the run was started with, when present."""
        path = self.path / self._CONFIG
        return json.loads(path.read_text()) if path.is_file() else None

    def read_log(self) -> list[dict[str, Any]]:
        """The training log's records (empty when there is none); a line a kill cut short is skipped."""
        return read_log(self.path / self._LOG) if self.holds_log() else []

    # ------------------------------------------------------------------------------------------------ writing
    @contextmanager
    def lock(self) -> Iterator[RunDir]:
        """Hold the run directory for one process (training into it) while the block runs.

        An exclusive, non-blocking ``flock`` on a file in the directory (created with the directory if needed),
        holding this process's id. The operating system releases it when the block ends and when the process exits
        or is killed, so a killed run can be resumed at once.

        Yields:
            ``self``.

        Raises:
            CheckpointError: another process holds it (or this one, through another :meth:`lock`), naming its pid;
                or the directory cannot be written.
        """
        def busy(holder: str) -> CheckpointError:
            return CheckpointError(f"{self.path} is being trained by another repinv process ({holder}); wait for it "
                                   "or stop it")

        def unwritable(reason: str) -> CheckpointError:
            return CheckpointError(f"cannot write in run directory {self.path} ({reason})")

        with exclusive_lock(self.path / self._LOCK, busy, unwritable):
            yield self

    def write_settings(self, settings: Mapping[str, Any]) -> None:
        """Create the directory and write ``config.json``."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / self._CONFIG, dict(settings))

    def write_model(self, decoder: Mapping[str, Tensor], metadata: Mapping[str, Any], mean_image: Tensor,
                    encoder: Mapping[str, Tensor] | None = None) -> None:
        """Write what :func:`repinv.load` needs: the decoder with the run's metadata, the mean image and, when
        given, the representation's weights."""
        save_tensors(self.path / self._DECODER, decoder, metadata)
        save_tensors(self.path / self._MEAN_IMAGE, {"mean_image": mean_image})
        if encoder is not None:
            save_tensors(self.path / self._ENCODER, encoder, metadata)

    def write_linear(self, tensors: Mapping[str, Tensor], metadata: Mapping[str, Any],
                     mean_image: Tensor | None) -> None:
        """Write a linear baseline's run directory."""
        save_tensors(self.path / self._LINEAR, tensors, metadata)
        if mean_image is not None:
            save_tensors(self.path / self._MEAN_IMAGE, {"mean_image": mean_image})

    def write_state(self, tensors: Mapping[str, Tensor], state: Mapping[str, Any], readable: Mapping[str, Any]) -> None:
        """Write the resume state (one atomic file), then its readable copy."""
        save_tensors(self.path / self._STATE, tensors, state)
        write_json(self.path / self._STATE_COPY, dict(readable))

    def append_log(self, record: Mapping[str, Any]) -> None:
        """Add one record to the training log."""
        with open(self.path / self._LOG, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def keep_log_until(self, step: int) -> None:
        """Keep only the log's records of steps up to ``step``: records of later steps (a killed run logged them; its
        resume logs them again), lines a kill cut short and records without a step are dropped."""
        if not self.holds_log():
            return
        kept = [record for record in self.read_log() if isinstance(record.get("step"), int) and record["step"] <= step]
        atomic_write(self.path / self._LOG,
                     lambda p: p.write_text("".join(json.dumps(record) + "\n" for record in kept)))
