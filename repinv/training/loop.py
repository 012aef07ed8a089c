"""Training a decoder to invert a representation: f(Φ(x)) ≈ x under the squared error (the paper's loss) or another
loss made of registered terms (:mod:`repinv.losses`).

The loop follows the paper (Adam, β1 0.9, β2 0.999, batch 64, rate 1e-3 halved at 50/75/90% of training by
default) and makes a run directory (see :mod:`repinv.rundir`) that ``--resume`` continues exactly: data order
and augmentation are functions of (seed, sample position), and the position is ``step × batch_size``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from repinv.analysis.evaluate import evaluate
from repinv.data.cache import FeatureCache, read_manifest
from repinv.data.features import feature_mode, with_features
from repinv.data.sources import DataWarning, DecodeWarning, ImageDataset, skip_summary
from repinv.data.stream import PositionSampler, TrainingSamples
from repinv.errors import CheckpointError, DataError, InvalidOption, NotDifferentiable, RepinvError
from repinv.files import load_into, optimizer_from_tensors, optimizer_to_tensors, under_prefix
from repinv.inversion.decoder import Inverter
from repinv.losses.base import TrainingLoss
from repinv.pictures import write_pairs_grid
from repinv.progress import hms, progress_bar
from repinv.registry.factories import build_decoder, create_representation
from repinv.registry.factories import decoder_config as decoder_config_of
from repinv.representations.base import Representation
from repinv.rundir import RunDir
from repinv.training import distributed
from repinv.training.allocator import keep_freed_memory
from repinv.training.compiling import CompiledOrEager
from repinv.training.config import TrainConfig, as_json, learning_rate_factor, resumed_config
from repinv.training.faults import FIRST_CHECKPOINT_SECONDS, disk_full_is_one_line, fault_point, settings_to_restart
from repinv.utils import VERSION, fast_bfloat16, resolve_device

__all__ = ["train", "resume", "TrainResult", "TrainingInterrupted"]

#: Training photos shown beside their reconstructions in each sample grid.
SAMPLE_IMAGES = 8

#: The training loop's clock (tests replace it with a fake one).
clock: Callable[[], float] = time.monotonic


class TrainingInterrupted(RepinvError):
    """Training stopped on Ctrl-C or SIGTERM after saving a checkpoint."""


@dataclass
class TrainResult:
    """What a finished (or budget-stopped) run reports."""

    run: Path  # the run directory
    step: int  # optimizer steps done in total
    loss: float  # mean training loss over the last logging window
    stopped_by: str  # "steps" or "time_budget"
    validation: dict[str, float] = field(default_factory=dict)  # last validation metrics, if any
    main: bool = True  # whether this process wrote the run (under torchrun, only rank 0 does)


class _Network(nn.Module):
    """Images (or their features) to reconstructions: the one module DistributedDataParallel wraps, so that a
    fine-tuned representation's gradients are averaged over the processes along with the decoder's."""

    def __init__(self, representation: Representation, decoder: nn.Module, finetune_encoder: bool,
                 bfloat16: bool) -> None:
        super().__init__()
        self.representation, self.decoder, self.finetune_encoder = representation, decoder, finetune_encoder
        self.autocast_bfloat16 = bfloat16

    def forward(self, images: Tensor, features: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The reconstructions, and the features they came from (for loss terms that look at them)."""
        if features is None:
            with torch.set_grad_enabled(self.finetune_encoder):
                features = self.representation(images)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.autocast_bfloat16):
            reconstructions: Tensor = self.decoder(features)
        return reconstructions, features


def _encoder_needs_saving(config: TrainConfig, representation: Representation) -> bool:
    """Representation weights are saved unless the representation rebuilds them by name (e.g. from a hub)."""
    if not representation.state_dict():
        return False
    return config.finetune_encoder or not representation.weights_from_options


class _Trainer:
    """One training run; :func:`train` and :func:`resume` are its public face."""

    def __init__(self, config: TrainConfig, run: Path, show_progress: bool, resuming: bool = False) -> None:
        self.config, self.run, self.folder = config, run, RunDir(run)
        keep_freed_memory()  # same-sized tensors every step: reuse their pages instead of faulting new ones
        self.processes, self.device = distributed.join(resolve_device(config.device))
        self.show_progress = show_progress and self.processes.main
        self.local_batch = self.processes.local_batch(config.batch_size)
        self.size = (config.image_size, config.image_size)
        self.output_size = (config.output_size or config.image_size,) * 2
        torch.manual_seed(config.seed)
        self.representation = create_representation(config.rep, **config.rep_options).to(self.device)
        # A resumed run whose encoder weights are in its directory needs neither the network nor the original file.
        self.saved_encoder = resuming and (config.finetune_encoder or self.folder.holds_encoder())
        if not self.saved_encoder:
            # Now rather than at the first step: a failed download must not leave a half-made run directory.
            self.representation.load_weights()
        if config.finetune_encoder and not self.representation.differentiable:
            raise NotDifferentiable(f"--finetune-encoder needs a differentiable representation; {config.rep} is not")
        self.data = FeatureCache(config.features) if config.features else \
            ImageDataset(config.data, config.image_size, train=config.augment, seed=config.seed, scale=config.scale)
        self.feature_mode = feature_mode(self.representation, cached=bool(config.features),
                                         finetune=config.finetune_encoder)
        self.spec = self.representation.spec(self.size)
        self.decoder = build_decoder(self.spec, self.size, config.decoder, self.output_size,
                                     **config.decoder_arguments()).to(self.device)
        # Channels-last is CUDA's fast layout; on a CPU it speeds up compiled steps (1.3x for the residual decoder,
        # docs/benchmarks.md) but not eager ones.
        if self.device.type == "cuda" or config.compile:
            self.decoder = self.decoder.to(memory_format=torch.channels_last)
        if config.init and not resuming:
            self._start_from(Path(config.init))
        self.loss = TrainingLoss(config.loss, config.loss_options, self.spec, self.output_size, self.device)
        if self.processes.world > 1 and any(term.trains_a_model for _, term in self.loss.items()):
            # Each process would train its own discriminator on its own share of the batch, and stop on its own.
            raise InvalidOption("loss terms that train a model of their own (adversarial) run in one process only; "
                                "drop torchrun for this run")
        parameters = list(self.decoder.parameters())
        if config.finetune_encoder:
            self.representation.train()
            parameters += [p for p in self.representation.parameters() if p.requires_grad]
        else:
            self.representation.requires_grad_(False)
        # The eager decoder stays the one saved and validated; the step runs through the compiled one when asked.
        decoder_step = CompiledOrEager(self.decoder) if config.compile else self.decoder
        bfloat16 = {"cuda": self.device.type == "cuda", "auto": fast_bfloat16(self.device), "all": True,
                    "none": False}[config.mixed_precision]
        network = _Network(self.representation, decoder_step, config.finetune_encoder, bfloat16)
        # Buffers are constants (filters, tables), or batch-norm statistics that each process keeps for itself (rank
        # 0's are saved): no need to send them every step.
        self.network = DistributedDataParallel(network, broadcast_buffers=False) if self.processes.world > 1 \
            else network
        # The fused kernel updates all parameters at once: about 1 ms less per step than per-tensor updates on a CPU.
        self.optimizer = torch.optim.Adam(parameters, lr=config.lr, betas=config.betas,
                                          weight_decay=config.weight_decay, fused=True)
        self.total = config.total_steps(len(self.data))
        self.step, self.elapsed = 0, 0.0
        # The mean training image (the baseline), over the images this process sees: a sample of all of them.
        self.mean_sum = torch.zeros(3, *self.size, dtype=torch.float64, device=self.device)
        self.mean_count = 0
        self.best_error = math.inf
        self.validation: dict[str, float] = {}
        # Indexed once, here: a bad validation source fails before training, not at the first validation.
        self.val_set = ImageDataset(config.val_data, config.image_size, train=False, seed=config.seed) \
            if config.val_data else None
        if self.val_set is not None and len(self.val_set) < 2:
            raise DataError(f"validation needs at least 2 images (the normalized error compares pairs); "
                            f"{config.val_data} has {len(self.val_set)}")

    def _start_from(self, run: Path) -> None:
        """Take the decoder's weights from another run (``init``), which must invert the same representation with
        the same architecture."""
        folder = RunDir(run).require()
        (rep_meta, image_size), saved = folder.identity(), folder.metadata().get("decoder", {}).get("config")
        theirs = {"representation": [rep_meta["name"], rep_meta["options"]], "image size": list(image_size),
                  "decoder": saved}
        ours = {"representation": [self.config.rep, self.representation.config()], "image size": list(self.size),
                "decoder": decoder_config_of(self.decoder)}
        differ = [f"{key} {as_json(theirs[key])} there, {as_json(ours[key])} here" for key in ours
                  if as_json(theirs[key]) != as_json(ours[key])]
        if differ:
            raise CheckpointError(f"cannot start from {run}: {'; '.join(differ)}")
        load_into(self.decoder, folder.read_decoder(self.device), f"decoder in {run}")

    # ---------------------------------------------------------------- checkpoints
    def lock(self) -> contextlib.AbstractContextManager[RunDir]:
        """The run directory, locked against a second trainer (the main process holds the lock for all)."""
        return self.folder.lock() if self.processes.main else contextlib.nullcontext(self.folder)

    def _metadata(self) -> dict[str, Any]:
        decoder_config = decoder_config_of(self.decoder)
        return {
            "repinv_version": VERSION,
            RunDir.FORMAT_KEY: RunDir.FORMAT,
            "representation": {"name": self.config.rep, "options": self.representation.config()},
            "decoder": {"name": decoder_config["name"], "config": decoder_config},
            "image_size": list(self.size),
            "output_size": list(self.output_size),
            "training": self.config.to_dict(),
            "step": self.step,
            "metrics": {"validation": self.validation} if self.validation else {},
        }

    def _mean_image(self) -> Tensor:
        return (self.mean_sum / max(1, self.mean_count)).float()

    def _save_model(self, folder: RunDir) -> None:
        encoder = self.representation.state_dict() if _encoder_needs_saving(self.config, self.representation) \
            else None
        folder.write_model(self.decoder.state_dict(), self._metadata(), self._mean_image(), encoder)

    def save(self) -> None:
        """Write the model files and the resume state (one atomic file, plus a readable copy); the main process
        writes, the others have nothing to add (their weights are the same)."""
        if not self.processes.main:
            return
        with disk_full_is_one_line(self.run, f"the checkpoint of step {self.step}"):
            self._save_model(self.folder)
            fault_point(f"checkpoint-write:{self.step}")
            self._save_state()

    def _save_state(self) -> None:
        optimizer_tensors, optimizer_json = optimizer_to_tensors(self.optimizer)
        tensors = {**{f"decoder.{k}": v for k, v in self.decoder.state_dict().items()}, **optimizer_tensors,
                   "mean_sum": self.mean_sum, "rng.cpu": torch.get_rng_state()}
        if self.config.finetune_encoder:
            tensors.update({f"encoder.{k}": v for k, v in self.representation.state_dict().items()})
        loss_tensors, loss_json = self.loss.training_state()
        tensors.update({f"loss.{k}": v for k, v in loss_tensors.items()})
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        state = {RunDir.FORMAT_KEY: RunDir.FORMAT, "step": self.step, "position": self.step * self.config.batch_size,
                 "elapsed": self.elapsed,
                 "mean_images": self.mean_count, "validation": self.validation,
                 "best_error": None if math.isinf(self.best_error) else self.best_error,
                 "training": self.config.to_dict(), "optimizer": optimizer_json, "losses": loss_json}
        self.folder.write_state(tensors, state, {k: v for k, v in state.items() if k != "optimizer"})

    def restore(self) -> None:
        """Continue from the run's resume state."""
        state, tensors = self.folder.read_state(self.device)
        load_into(self.decoder, under_prefix(tensors, "decoder."),
                  f"decoder state in {self.run}")
        if self.config.finetune_encoder:
            load_into(self.representation, under_prefix(tensors, "encoder."),
                      f"encoder state in {self.run}")
        elif self.saved_encoder:
            load_into(self.representation, self.folder.read_encoder(self.device) or {}, f"encoder in {self.run}")
        optimizer_from_tensors(self.optimizer, tensors, state["optimizer"])
        self.loss.load_training_state(under_prefix(tensors, "loss."), state.get("losses") or {})
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        self.validation = dict(state.get("validation") or {})
        if self.processes.main:
            self.folder.keep_log_until(self.step)
        self.best_error = math.inf if state["best_error"] is None else float(state["best_error"])
        self.mean_sum = tensors["mean_sum"]
        self.mean_count = int(state.get("mean_images", self.step * self.config.batch_size))
        torch.set_rng_state(tensors["rng.cpu"].cpu())
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"].cpu(), self.device)

    # ---------------------------------------------------------------- logging, samples, validation
    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[Inverter]:
        """The inverter, with the decoder and the representation in evaluation mode (a fine-tuned encoder trains
        in training mode: dropout and batch statistics must not touch samples or validation), restored after."""
        modes = [(module, module.training) for module in (self.decoder, self.representation)]
        for module, _ in modes:
            module.eval()
        try:
            yield Inverter(self.representation, self.decoder, self.size, self._metadata(), self._mean_image())
        finally:
            for module, mode in modes:
                module.train(mode)

    def _log(self, record: dict[str, Any]) -> None:
        if self.processes.main:
            self.folder.append_log(record)

    @torch.no_grad()
    def _write_samples(self, images: Tensor | None) -> None:
        if images is None:  # only the main process writes samples
            return
        with self._evaluating() as inverter:
            reconstructions = inverter.reconstruct(images).clamp(0, 1)
        write_pairs_grid(images, reconstructions, self.folder.sample_grid(self.step))

    def _validate(self, images: ImageDataset) -> None:
        with self._evaluating() as inverter:
            result = evaluate(inverter, images, batch_size=self.config.batch_size,
                              limit=self.config.val_images, seed=self.config.seed)
        self.validation = result["decoder"]
        self._log({"step": self.step, "val": self.validation})
        if self.validation["normalized_error"] < self.best_error:
            self.best_error = self.validation["normalized_error"]
            with disk_full_is_one_line(self.run, "the best checkpoint"):
                self._save_model(self.folder.best)

    def _sample_images(self) -> Tensor:
        if isinstance(self.data, FeatureCache) and not self.config.val_data:
            return self.data.images(SAMPLE_IMAGES).to(self.device)
        source = self.config.val_data or self.config.data
        fixed = ImageDataset(source, self.config.image_size, train=False, seed=self.config.seed)
        return torch.stack([fixed[i] for i in range(min(SAMPLE_IMAGES, len(fixed)))]).to(self.device)

    # ---------------------------------------------------------------- the loop
    def _loader(self) -> DataLoader[Tensor | tuple[Tensor, Tensor]]:
        per_image = self.representation if self.feature_mode == "workers" else None
        sampler = PositionSampler(len(self.data), self.config.seed, start=self.step * self.config.batch_size,
                                  rank=self.processes.rank, world=self.processes.world)
        workers = self.config.workers
        return DataLoader(TrainingSamples(self.data, per_image), batch_size=self.local_batch,
                          sampler=sampler, num_workers=workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=workers > 0, prefetch_factor=4 if workers else None)

    def _batches(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        """``(images, features or None)`` for every step (:mod:`repinv.data.features` decides where Φ runs);
        batched features are computed for the next ``feature_batch`` images in one call."""
        group = -(-self.config.feature_batch // self.local_batch)
        return with_features(self._loader(), self.representation, self.feature_mode, self.device, group)

    def _step(self, batch: tuple[Tensor, Tensor | None], progress: float) -> tuple[float, dict[str, float], int]:
        """One optimizer step at ``progress`` ∈ [0, 1] of training (then the loss terms' own steps); returns its
        loss, each loss term's value (and what the terms log), and how many images it saw."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * learning_rate_factor(self.config.schedule, progress)
        images, given = batch
        reconstructions, features = self.network(images, given)
        target = images
        if tuple(reconstructions.shape[-2:]) != self.size:
            target = F.interpolate(images, size=reconstructions.shape[-2:], mode="bilinear", antialias=True)
        loss, values = self.loss(reconstructions, target, features)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        terms = {name: value.item() for name, value in values.items()}
        terms.update(self.loss.after_step(reconstructions.detach(), target, features.detach(), terms))
        self.step += 1
        self.mean_sum += images.detach().sum(0, dtype=torch.float64)
        self.mean_count += images.shape[0]
        return loss.item(), terms, images.shape[0]

    def _status(self, loss: float, rate: float) -> str:
        """The progress bar's line, with an ETA bounded by the time budget; under a budget, whose seconds the bar
        counts, also the step reached."""
        remaining = (self.total - self.step) * self.config.batch_size / max(rate, 1e-9)
        step = ""
        if self.config.time_budget is not None:
            remaining = min(remaining, self.config.time_budget - self.elapsed)
            step = f"step {self.step:,}/{self.total:,} · "
        return f"{step}loss {loss:.4f} · {rate:,.0f} img/s · remaining {hms(remaining)}"

    def _progress(self) -> int:
        """Where the progress bar stands: seconds of the time budget used when there is one (it usually ends the
        run first, so a count of steps would stop far short of its total), else steps."""
        return int(self.elapsed) if self.config.time_budget is not None else self.step

    def budget_spent(self) -> float:
        """The share of the time budget used, across every session of the run (0 without a budget)."""
        return self.elapsed / self.config.time_budget if self.config.time_budget else 0.0

    def nothing_left(self) -> str | None:
        """Why a restored run has no step left to take, or None."""
        if self.step >= self.total:
            return f"it has taken all its {self.total} steps: give more --steps (or --epochs)"
        if self.budget_spent() >= 1:
            return (f"it has trained for {self.elapsed:.0f} s, its whole time budget of {self.config.time_budget:g} s:"
                    " give a larger --time-budget (the total, not the extra seconds)")
        return None

    def run_loop(self) -> TrainResult:
        """Train until the steps or the time budget run out (or a stop), then say in one line what failed to decode
        during the run (per image warnings would repeat across epochs and workers)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DecodeWarning)
                return self._loop()
        finally:
            if self.processes.main:
                for data, during in ((self.data, "training"), (self.val_set, "validation")):
                    summary = skip_summary(data, during) if data is not None else None
                    if summary:
                        warnings.warn(summary, DataWarning, stacklevel=2)

    def _loop(self) -> TrainResult:
        config, main = self.config, self.processes.main
        stop_requested: list[str] = []
        # SIGTERM (a scheduler preempting the job) stops at the next step with a checkpoint; only the main
        # thread may install handlers, so a run started from another thread goes without.
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop_requested.append("SIGTERM")) if in_main_thread \
            else None
        samples = self._sample_images() if main else None
        started = last_save = window_start = clock()
        # The first checkpoint comes soon, so that a kill early in a run loses little; later ones on the schedule.
        save_every = config.checkpoint_seconds if self.folder.holds_state() else \
            min(config.checkpoint_seconds, FIRST_CHECKPOINT_SECONDS)
        session_start_elapsed, window_loss, window_steps, window_images = self.elapsed, 0.0, 0, 0
        window_terms: dict[str, float] = {}
        stopped_by, loss_value, spent = "steps", math.nan, self.budget_spent()
        self.decoder.train()
        try:
            budget = config.time_budget
            with progress_bar(f"training {config.rep}", total=self.total if budget is None else math.ceil(budget),
                              enabled=self.show_progress, own_eta=True, unit="" if budget is None else "s") as advance:
                shown = self._progress()
                advance(shown)
                batches = self._batches()
                while self.step < self.total:
                    # Progress is by steps, or by the time budget when that ends the run first, so a budgeted run
                    # still anneals its rate before it stops; both count every session of the run, so a resumed
                    # run goes on with the rate where it left it.
                    loss, terms, seen = self._step(next(batches), max(self.step / self.total, spent))
                    fault_point(f"after-step:{self.step}")
                    window_loss, window_steps = window_loss + loss, window_steps + 1
                    for name, value in terms.items():
                        window_terms[name] = window_terms.get(name, 0.0) + value
                    window_images += seen
                    now = clock()
                    self.elapsed = session_start_elapsed + now - started
                    # All processes must take the same decisions at the same step, whatever their own clocks say.
                    spent, stop = distributed.agree(self.processes, [self.budget_spent(), float(bool(stop_requested))],
                                                    self.device)
                    rate = window_images * self.processes.world / max(now - window_start, 1e-9)
                    loss_value = window_loss / window_steps
                    advance(self._progress() - shown, status=self._status(loss_value, rate))
                    shown = self._progress()
                    last = spent >= 1 or bool(stop) or self.step == self.total
                    # The last step is always logged, so that even a run shorter than log_every has a log.
                    if self.step % config.log_every == 0 or last:
                        names = list(window_terms)
                        loss_value, *means = distributed.average(
                            self.processes, [loss_value, *(window_terms[name] / window_steps for name in names)],
                            self.device)
                        self._log({"step": self.step, "loss": loss_value, "lr": self.optimizer.param_groups[0]["lr"],
                                   "images_per_s": rate, "elapsed": self.elapsed, "terms": dict(zip(names, means))})
                        window_loss, window_steps, window_start, window_images = 0.0, 0, now, 0
                        window_terms = {}
                    if self.step % config.sample_every == 0:
                        self._write_samples(samples)
                    if main and self.val_set is not None and self.step % config.val_every == 0:
                        self._validate(self.val_set)
                    if (self.step % config.checkpoint_every == 0 or now - last_save >= save_every
                            or last):
                        self.save()
                        last_save, save_every = clock(), config.checkpoint_seconds
                    if spent >= 1:
                        stopped_by = "time_budget"
                        break
                    if stop:
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            self.save()
            raise TrainingInterrupted(f"training interrupted at step {self.step}; checkpoint saved; continue with "
                                      f"`repinv train --resume {self.run}`") from None
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)
        if self.step % config.sample_every:
            self._write_samples(samples)
        if main and self.val_set is not None and self.step % config.val_every:
            self._validate(self.val_set)
            self.save()
        return TrainResult(self.run, self.step, loss_value, stopped_by, self.validation, main)


def train(config: TrainConfig, out: str | Path, *, show_progress: bool = True) -> TrainResult:
    """Train a decoder for ``config.rep`` into a new run directory.

    Like :func:`resume`, it sets the process's C allocator to keep freed memory for reuse
    (:func:`repinv.allocator.keep_freed_memory`; glibc only): 10-15% more images/s on a CPU.

    Args:
        config: the run's settings (see :func:`repinv.config.make_config`). With ``config.features``, the cache
            sets the representation, its options and the image size.
        out: the run directory; it must not already hold a run (use :func:`resume` to continue one).
        show_progress: show a progress bar with step, loss, images/s and ETA.

    Returns:
        The step reached, the last training loss, what stopped the run and the last validation metrics.

    Raises:
        CheckpointError: ``out`` already holds a run.
        TrainingInterrupted: Ctrl-C or SIGTERM (a checkpoint was saved first).
    """
    run = Path(out)
    if config.features:
        cache = read_manifest(config.features)
        config = dataclasses.replace(config, rep=cache["representation"]["name"], data=[],
                                     rep_options=cache["representation"]["options"], image_size=cache["image_size"][0])
    if RunDir(run).holds_state():
        raise CheckpointError(f"{run} already holds a run; continue it with --resume {run} or choose another --out")
    return _start(config.validate(), run, show_progress)


def _start(config: TrainConfig, run: Path, show_progress: bool) -> TrainResult:
    """Train ``config`` from step 0 into ``run``."""
    try:
        trainer = _Trainer(config, run, show_progress)
        trainer.processes.barrier()  # every process has looked at `run` before the main one writes there
        with trainer.lock():
            if trainer.processes.main:
                RunDir(run).write_settings(config.to_dict())
            return trainer.run_loop()
    finally:
        distributed.leave()


def resume(run: str | Path, *, show_progress: bool = True, **changes: Any) -> TrainResult:
    """Continue a run from its last checkpoint.

    Args:
        run: the run directory.
        show_progress: show a progress bar.
        **changes: settings to change, only among :data:`repinv.training.config.RESUMABLE_SETTINGS` (e.g. more
            ``steps``, a larger ``time_budget``); a different value for any other setting is refused. ``steps``
            and ``time_budget`` are totals over every session of the run.

    Returns:
        As :func:`train`.

    Raises:
        InvalidOption: a setting that cannot change, or a run with no step left (all its steps taken, or its
            whole time budget used) and no more given.
        TrainingInterrupted: Ctrl-C or SIGTERM (a checkpoint was saved first).
    """
    run, folder = Path(run), RunDir(run)
    restart = not folder.holds_state()
    saved = settings_to_restart(folder) if restart else folder.training_settings()
    config = resumed_config(saved, changes, run)
    if restart:
        folder.keep_log_until(0)  # what the stopped session logged is done again
        return _start(config, run, show_progress)
    try:
        trainer = _Trainer(config, run, show_progress, resuming=True)
        with trainer.lock():
            trainer.restore()
            if (reason := trainer.nothing_left()) is not None:
                raise InvalidOption(f"nothing to resume in {run}: {reason}")
            return trainer.run_loop()
    finally:
        distributed.leave()



