"""Training configuration and recipes.

:class:`TrainConfig` holds every setting of a training run, with the paper's values as defaults. A recipe is a
small TOML file that overrides some of them (one comment per value); it is read as data, never executed.
Recipes ship inside the package (``--recipe hog-64``) or are given by path (``--recipe my.toml``). Command-line
flags override the recipe, which overrides the defaults.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from repinv.errors import InvalidOption
from repinv.losses.base import DEFAULT_LOSS, parse_loss
from repinv.options import dataclass_options, option_error, validate_options

__all__ = ["RESUMABLE_SETTINGS", "resumed_config", "as_json", "TrainConfig", "TRAIN_OPTIONS", "load_recipe",
           "list_recipes", "make_config", "epochs_over_steps", "learning_rate_factor"]


SCHEDULES = ("paper", "paper-to-zero", "constant", "cosine")  # see learning_rate_factor


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint)."""

    rep: str = "hog"  # representation name, family[:variant]
    rep_options: dict[str, Any] = field(default_factory=dict)  # options passed to the representation's factory
    decoder: str | None = None  # decoder architecture; None picks conv for maps, fc for vectors
    decoder_options: dict[str, Any] = field(default_factory=dict)  # options passed to the decoder builder
    width: float | None = None  # decoder option width: scales every channel count (None: the decoder's default,
    # 1.0 = the paper's size for conv and fc)
    data: list[str] = field(default_factory=lambda: ["builtin"])  # training sources: folders, tar globs, builtin
    features: str | None = None  # a feature cache (`repinv features`) to train from instead of data; it sets
    # rep, rep_options and image_size, and has no augmentation
    augment: bool = True  # random crops, flips and scale when training on data; False = fixed centre crops
    val_data: list[str] = field(default_factory=list)  # validation sources; empty = no validation
    image_size: int = 64  # side of the square training crops, in pixels
    output_size: int | None = None  # side of the decoder's output; None = image_size
    scale: tuple[float, float] = (1.0, 1.0)  # random up-scaling range before cropping (data augmentation)
    steps: int | None = None  # optimizer steps; None = from epochs, or 20,000 when both are None
    epochs: float | None = None  # passes over the training data, used when steps is None (giving epochs
    # alone, as a flag or on resume, clears a recipe's steps)
    batch_size: int = 64  # images per optimizer step (global, over all processes)
    lr: float = 1e-3  # Adam's learning rate (the paper's)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's beta1, beta2 (the paper's)
    weight_decay: float = 0.0  # L2 penalty on decoder weights (the paper uses none)
    schedule: str = "paper"  # "paper" halves the rate at 50/75/90% of training; "paper-to-zero" then decays the
    # last 10% linearly to zero; "constant"; "cosine"
    finetune_encoder: bool = False  # train the representation with the decoder (autoencoder mode)
    loss: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LOSS))  # the loss terms and their weights;
    # given as text, "mse + 0.01*feature + 0.001*adversarial" (repinv.losses); {"mse": 1.0} is the paper's
    loss_options: dict[str, Any] = field(default_factory=dict)  # options per loss term, e.g. {"feature": {"rep":
    # "timm:tf_efficientnet_lite0:blocks.3", "weights": "FILE", "input_size": 64}}
    init: str | None = None  # a run whose decoder weights this run starts from (fine-tuning, e.g. with another
    # loss); its representation and decoder architecture must be this run's
    mixed_precision: str = "cuda"  # where the decoder runs under bfloat16 autocast: "cuda" (GPUs only), "auto"
    # (also CPUs with bfloat16 instructions, AVX512-BF16 or AMX), "all" (every device: slower on CPUs without), "none"
    compile: bool = False  # torch.compile the decoder's training step (on a CPU it needs a C++ compiler; where
    # compiling fails, training goes on without it after one warning line)
    workers: int = 2  # data-loader worker processes (0 = load in the training process)
    feature_batch: int = 64  # features computed on the fly are computed for this many images at a time, i.e.
    # for the next several steps' batches in one call, because per-call costs dominate small batches (1: per step)
    seed: int = 0  # seeds weights, data order and augmentation
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:1", ...
    time_budget: float | None = None  # stop cleanly, with a checkpoint, after this many seconds of training in
    # all (the sessions of a resumed run add up, as its steps do)
    log_every: int = 50  # steps between lines of the training log
    sample_every: int = 500  # steps between reconstruction grids in samples/
    checkpoint_every: int = 500  # steps between checkpoints (also at most checkpoint_seconds apart)
    checkpoint_seconds: float = 120.0  # longest time between checkpoints, so a killed run loses little
    val_every: int = 500  # steps between validations (when val_data is given)
    val_images: int = 512  # at most this many validation images per validation

    def decoder_arguments(self) -> dict[str, Any]:
        """The decoder builder's options: ``width`` (shorthand for the decoder option, passed only when given), then
        ``decoder_options``."""
        width = {} if self.width is None else {"width": self.width}
        return {**width, **self.decoder_options}

    def total_steps(self, dataset_size: int) -> int:
        """The number of optimizer steps this run takes on a data set of ``dataset_size`` images."""
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            return max(1, round(self.epochs * dataset_size / self.batch_size))
        return 20_000

    def validate(self) -> TrainConfig:
        """Check every setting against :data:`TRAIN_OPTIONS` and convert it to its field's type (``200.0`` steps
        are 200, a tuple of sources becomes a list).

        Returns:
            ``self``, converted.

        Raises:
            InvalidOption: a value of the wrong kind or out of range, or no data source and no feature cache.
        """
        given = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}
        for name, value in validate_options("training", given, TRAIN_OPTIONS).items():
            setattr(self, name, value)
        self.loss = parse_loss(self.loss)
        for term, options in self.loss_options.items():
            if not isinstance(options, dict):
                raise option_error("training", "loss_options", f"options by loss term ({term} = {{KEY = VALUE}})",
                                   self.loss_options)
        if not self.data and self.features is None:
            raise option_error("training", "data", "at least one data source, unless features is given", self.data)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy (tuples become lists)."""
        return dataclasses.asdict(self)


#: Where the decoder may run under bfloat16 autocast (TrainConfig.mixed_precision).
MIXED_PRECISION = ("cuda", "auto", "all", "none")

#: The settings as options: each field's kind and default, with the bounds a run needs.
TRAIN_OPTIONS = dataclass_options(TrainConfig, {
    "width": {"above": 0}, "image_size": {"minimum": 8}, "output_size": {"minimum": 4}, "steps": {"minimum": 1},
    "epochs": {"above": 0}, "batch_size": {"minimum": 1}, "lr": {"above": 0}, "betas": {"minimum": 0, "below": 1},
    "weight_decay": {"minimum": 0}, "schedule": {"kind": SCHEDULES}, "workers": {"minimum": 0},
    "mixed_precision": {"kind": MIXED_PRECISION},
    "loss": {"kind": object, "help": "text such as 'mse + 0.01*feature', or {term: weight}"},
    "feature_batch": {"minimum": 1}, "time_budget": {"above": 0}, "log_every": {"minimum": 1},
    "sample_every": {"minimum": 1}, "checkpoint_every": {"minimum": 1}, "checkpoint_seconds": {"above": 0},
    "val_every": {"minimum": 1},
    "val_images": {"minimum": 2, "help": "the normalized error compares pairs of images"},
})


def list_recipes() -> list[str]:
    """Names of the recipes that ship with repinv (usable as ``--recipe NAME``)."""
    return sorted(p.name[:-5] for p in resources.files("repinv.recipes").iterdir() if p.name.endswith(".toml"))


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """Read a recipe's overrides.

    Args:
        name_or_path: a shipped recipe's name (``"hog-64"``) or a path to a TOML file.

    Returns:
        The overrides, validated against :class:`TrainConfig`'s fields and types.

    Raises:
        InvalidOption: unknown recipe, unreadable TOML, unknown setting or bad value.
    """
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise InvalidOption(f"recipe file {name_or_path!r} not found")
        text = path.read_text()
    else:
        shipped = resources.files("repinv.recipes") / f"{name_or_path}.toml"
        if not shipped.is_file():
            raise InvalidOption(f"unknown recipe {name_or_path!r}; shipped recipes: {', '.join(list_recipes())} "
                                "(or give a path to a .toml file)")
        text = shipped.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InvalidOption(f"recipe {name_or_path!r} is not valid TOML: {error}") from None
    return _check_overrides(raw, f"recipe {name_or_path!r}")


def _check_overrides(overrides: dict[str, Any], source: str = "") -> dict[str, Any]:
    """``overrides`` checked and converted as settings (only those given), the ``source`` named in errors."""
    try:
        return validate_options("training", overrides, TRAIN_OPTIONS, fill_defaults=False)
    except InvalidOption as error:
        if not source:
            raise
        raise InvalidOption(f"{source}: {error}") from None


def make_config(recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """Build a validated config: defaults, then the recipe, then ``overrides`` (``None`` values are ignored).

    Args:
        recipe: a recipe name or path, or ``None``.
        **overrides: settings by field name, e.g. ``steps=100`` (typically from command-line flags).

    Returns:
        The config.
    """
    values = load_recipe(recipe) if recipe else {}
    given = {k: v for k, v in overrides.items() if v is not None and not (isinstance(v, (dict, list, tuple))
                                                                           and len(v) == 0)}
    for name, value in _check_overrides(given).items():
        # Option dicts merge, so `--decoder-opt width=0.5` keeps the recipe's other decoder options (and a loss
        # term's options the recipe's other options for that term); a loss replaces the recipe's.
        if name == "loss_options":
            value = {term: {**values.get(name, {}).get(term, {}), **options} for term, options in value.items()}
        values[name] = {**values.get(name, {}), **value} if isinstance(value, dict) and name != "loss" else value
    return TrainConfig(**epochs_over_steps(values, given)).validate()


def epochs_over_steps(values: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``values`` with ``steps`` cleared when ``epochs`` is given without ``steps``: steps win over epochs, so a
    recipe's (or a run's) step count would otherwise silently override the epochs asked for."""
    if given.get("epochs") is not None and given.get("steps") is None:
        return {**values, "steps": None}
    return values


def learning_rate_factor(schedule: str, progress: float) -> float:
    """The learning rate, relative to the initial one, at ``progress`` ∈ [0, 1] of training.

    ``paper`` halves it at 50%, 75% and 90% (the paper: "gradually decreased towards the end"); ``paper-to-zero``
    does the same, then takes the last 10% linearly to zero, so a short run ends without gradient noise in its
    weights; ``cosine`` anneals it to zero; ``constant`` keeps it.
    """
    if schedule in ("paper", "paper-to-zero"):
        factor = 0.5 ** sum(progress >= milestone for milestone in (0.5, 0.75, 0.9))
        if schedule == "paper-to-zero" and progress > 0.9:
            factor *= max(0.0, 1.0 - (progress - 0.9) / 0.1)
        return factor
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return 1.0


#: Settings a resumed run may change; everything else must match the run being continued.
RESUMABLE_SETTINGS = frozenset({"steps", "epochs", "time_budget", "workers", "compile", "mixed_precision",
                                "feature_batch", "device", "log_every", "sample_every", "checkpoint_every",
                                "checkpoint_seconds", "val_every", "val_images", "val_data"})


def resumed_config(saved: dict[str, Any], changes: dict[str, Any], run: Path | str) -> TrainConfig:
    """The settings of a resumed run: those it was trained with, and the ``changes`` among
    :data:`RESUMABLE_SETTINGS` (``None`` and empty values count as not given).

    Raises:
        InvalidOption: an unknown setting, or a change to one that must stay as trained.
    """
    values = dict(saved)
    for name, value in changes.items():
        if value is None or (isinstance(value, (list, tuple, dict)) and not value):
            continue  # not given
        if name not in values and name not in RESUMABLE_SETTINGS:  # a resumable one may postdate the run
            raise InvalidOption(f"unknown setting {name!r}")
        if name not in RESUMABLE_SETTINGS and as_json(value) != as_json(saved[name]):
            raise InvalidOption(f"cannot change {name} when resuming {run}: it was trained with {saved[name]!r}, "
                                f"not {value!r} (start a new run instead)")
        values[name] = value
    values = epochs_over_steps(values, changes)
    values["betas"], values["scale"] = tuple(values["betas"]), tuple(values["scale"])
    return TrainConfig(**values).validate()


def as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), to compare settings with saved ones."""
    return json.loads(json.dumps(value))
