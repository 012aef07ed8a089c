"""Feature studies with trained decoders (Dosovitskiy & Brox 2016, sections 4.3-4.5).

* :func:`analyze`: for each checkpoint and each perturbation (``NAME[:ARG]``, see :mod:`repinv.perturbations`),
  the normalized reconstruction error of the decoder fed perturbed features, beside the unperturbed reference
  row; a JSON file, one PNG grid per checkpoint and, for several checkpoints (e.g. the layers of one network),
  a plot of error per checkpoint with one curve per perturbation (the paper's Figure 7).
* :func:`interpolate` / :func:`write_interpolation_strip`: reconstructions of linear interpolations between
  two images' features.
* Random feature vectors live in :mod:`repinv.sampling`.

Every error is on the scale of :mod:`repinv.metrics` (the same normalizer for every row of one checkpoint), so
a perturbation's row is directly comparable with the unperturbed one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from repinv.analysis.perturbations import apply_perturbation, parse_perturbation
from repinv.analysis.scoring import Entry, score
from repinv.data.sources import evaluation_loader, load_images
from repinv.errors import InvalidOption
from repinv.files import atomic_write, write_json
from repinv.inversion.decoder import DecoderInverter, load_decoder
from repinv.inversion.mean import MeanImageInverter
from repinv.losses.perceptual import Comparator
from repinv.pictures import write_image_table
from repinv.rundir import RunDir

__all__ = ["REFERENCE", "perturbation_study", "analyze", "checkpoint_labels", "slug",
           "plot_per_layer", "interpolate", "write_interpolation_strip"]

#: The key of the unperturbed reference row in every result.
REFERENCE = "unperturbed"
#: The mean image's row, reported apart from the perturbation rows as ``baseline``.
MEAN_IMAGE = "mean image"


@torch.no_grad()
def perturbation_study(inverter: DecoderInverter, data: str | Sequence[str], perturbations: Sequence[str], *,
                       batch_size: int = 64, limit: int | None = None, workers: int = 0, seed: int = 0,
                       show_progress: bool = False, grid: str | Path | None = None,
                       comparator: Comparator | None = None) -> dict[str, Any]:
    """Reconstruction error from perturbed features, for one trained inverter.

    Args:
        inverter: the trained inverter.
        data: test sources (resized and centre-cropped to the inverter's image size).
        perturbations: ``NAME[:ARG]`` strings (registered perturbations).
        batch_size: images per batch.
        limit: use at most this many images (the first ones).
        workers: data-loader worker processes.
        seed: seeds the perturbations (image ``i`` gets its own generator, see
            :func:`repinv.perturbations.apply_perturbation`) and the error normalizer's reference sample.
        show_progress: show a progress bar.
        grid: when given, a PNG of the first 8 images: original, unperturbed reconstruction, one column per
            perturbation.
        comparator: also measure each row's perceptual error in this comparator's features.

    Returns:
        ``{"representation", "image_size", "images", "results", "baseline"}``: ``results`` maps
        ``"unperturbed"`` and each perturbation to ``{normalized_error, psnr, ssim}``, perturbations also to
        ``feature_change`` (mean ``‖Φ' − Φ‖₂ / ‖Φ‖₂``); ``baseline`` holds the mean image's metrics when the run
        has one.

    Raises:
        InvalidOption, UnknownName: a bad perturbation (checked on a random feature sample before any work).
    """
    perturbations = list(dict.fromkeys(perturbations))
    if REFERENCE in perturbations:
        raise InvalidOption(f"{REFERENCE!r} is the reference row and always included; not a perturbation name")
    probe = torch.rand(1, *inverter.spec.shape)
    for text in perturbations:  # fail on a bad name or argument now, not after a pass over the data
        apply_perturbation(text, probe, seed=seed)
    loader = evaluation_loader(data, inverter.image_size, limit=limit, batch_size=batch_size, workers=workers,
                               pin_memory=inverter.device.type == "cuda")
    entries = [Entry(REFERENCE, inverter, feature_error=False),
               *(Entry(text, inverter, perturbation=text, feature_error=False) for text in perturbations)]
    if inverter.mean_image is not None:
        entries.append(Entry(MEAN_IMAGE, MeanImageInverter(inverter.representation, inverter.mean_image),
                             feature_error=False))
    scores = score(loader, inverter.representation, entries, device=inverter.device, comparator=comparator,
                   seed=seed, show_progress=show_progress, description=f"perturbing {inverter.representation.name}")
    if grid is not None:
        names = [REFERENCE, *perturbations]
        write_image_table([scores.shown["images"], *(scores.shown[name] for name in names)], grid,
                          labels=["original", *names])
    results = {name: scores.metrics[name] for name in [REFERENCE, *perturbations]}
    for text in perturbations:
        results[text]["feature_change"] = scores.feature_change[text]
    return {"representation": inverter.representation.name, "image_size": list(inverter.image_size),
            "images": scores.images, "results": results, "baseline": scores.metrics.get(MEAN_IMAGE)}


def _representation_name(checkpoint: str | Path | DecoderInverter) -> str:
    if isinstance(checkpoint, DecoderInverter):
        return checkpoint.representation.name
    return RunDir(checkpoint).representation_name()


def _run_name(checkpoint: str | Path | DecoderInverter, position: int) -> str:
    return f"checkpoint-{position}" if isinstance(checkpoint, DecoderInverter) else str(checkpoint)


def checkpoint_labels(checkpoints: Sequence[str | Path | DecoderInverter]) -> list[str]:
    """Readable, distinct labels: the representation name (a layer, e.g. ``alexnet:conv3``), with the run
    directory's name added where two checkpoints invert the same representation.

    Raises:
        CheckpointError: a run directory is missing or unreadable (only its metadata is read).
    """
    names = [_representation_name(c) for c in checkpoints]
    return [f"{name} ({Path(_run_name(c, i)).name})" if names.count(name) > 1 else name
            for i, (name, c) in enumerate(zip(names, checkpoints))]


def slug(label: str) -> str:
    """``label`` made safe for a file name (``alexnet:conv3`` → ``alexnet-conv3``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or "checkpoint"


def plot_per_layer(result: dict[str, Any], path: str | Path) -> Path:
    """Plot normalized error per checkpoint with one curve per perturbation (the paper's Figure 7).

    Args:
        result: what :func:`analyze` returns (its ``checkpoints`` in order are the x axis).
        path: the PNG file.

    Returns:
        ``path``.
    """
    # The object API with the Agg canvas: no pyplot state, no global backend switch in the caller's process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    checkpoints = result["checkpoints"]
    labels = [c["label"] for c in checkpoints]
    figure = Figure(figsize=(max(5.0, 0.9 * len(labels) + 2), 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    x = list(range(len(labels)))
    for name in [REFERENCE, *result["perturbations"]]:
        axes.plot(x, [c["results"][name]["normalized_error"] for c in checkpoints], marker="o", label=name)
    if all(c["baseline"] for c in checkpoints):
        axes.plot(x, [c["baseline"]["normalized_error"] for c in checkpoints], color="gray", linestyle="--",
                  label="mean image")
    axes.set_xticks(x, labels, rotation=30 if max(map(len, labels)) > 8 else 0, ha="right")
    axes.set_ylabel("normalized reconstruction error")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    atomic_write(Path(path), lambda p: figure.savefig(p, format="png"))
    return Path(path)


def analyze(checkpoints: Sequence[str | Path | DecoderInverter], data: str | Sequence[str],
            perturbations: Sequence[str], *, out: str | Path | None = None, device: str = "auto",
            batch_size: int = 64, limit: int | None = None,
            workers: int = 0, seed: int = 0, show_progress: bool = False,
            comparator: Comparator | None = None) -> dict[str, Any]:
    """Perturbation study over several checkpoints (loaded one at a time, so many layers fit in memory).

    Args:
        checkpoints: run directories (or inverters already loaded), e.g. one per layer of a network.
        data: test sources.
        perturbations: ``NAME[:ARG]`` strings.
        out: when given, writes there ``perturbations.json``, ``perturbations-LABEL.png`` per checkpoint and, for
            several checkpoints, ``perturbations-per-layer.png``.
        device: where to load run directories.
        batch_size, limit, workers, seed, show_progress, comparator: as in :func:`perturbation_study`.

    Returns:
        ``{"data", "seed", "perturbations", "checkpoints": [{"checkpoint", "label", **study}], "files"}``, JSON-able;
        ``files`` lists what was written.

    Raises:
        CheckpointError: a checkpoint is missing or unreadable (checked for all before any work).
    """
    if not checkpoints:
        raise InvalidOption("give at least one checkpoint")
    perturbations = list(dict.fromkeys(perturbations))
    for text in perturbations:
        parse_perturbation(text)
    sources = [data] if isinstance(data, str) else list(data)
    runs = [_run_name(c, i) for i, c in enumerate(checkpoints)]
    labels = checkpoint_labels(checkpoints)
    result: dict[str, Any] = {"data": sources, "seed": seed, "perturbations": perturbations, "checkpoints": [],
                              "comparator": comparator.name if comparator is not None else None, "files": []}
    for checkpoint, run, label in zip(checkpoints, runs, labels):
        inverter = checkpoint if isinstance(checkpoint, DecoderInverter) else load_decoder(checkpoint, device)
        grid = Path(out) / f"perturbations-{slug(label)}.png" if out is not None else None
        study = perturbation_study(inverter, sources, perturbations, batch_size=batch_size, limit=limit,
                                   workers=workers, seed=seed, show_progress=show_progress, grid=grid,
                                   comparator=comparator)
        result["checkpoints"].append({"checkpoint": run, "label": label, **study})
        if grid is not None:
            result["files"].append(str(grid))
    if out is not None:
        if len(checkpoints) > 1:
            result["files"].append(str(plot_per_layer(result, Path(out) / "perturbations-per-layer.png")))
        result["files"].append(str(Path(out) / "perturbations.json"))
        write_json(Path(out) / "perturbations.json", result)
    return result


def _image(inverter: DecoderInverter, image: Tensor | str | os.PathLike[str]) -> Tensor:
    if isinstance(image, Tensor):
        return image.unsqueeze(0) if image.dim() == 3 else image
    return load_images([image], inverter.image_size)


@torch.no_grad()
def interpolate(inverter: DecoderInverter, image_a: Tensor | str | os.PathLike[str],
                image_b: Tensor | str | os.PathLike[str], steps: int = 8) -> Tensor:
    """Reconstructions of ``(1 − t)·Φ(a) + t·Φ(b)`` for ``steps`` values of ``t`` evenly from 0 to 1.

    Args:
        inverter: the trained inverter.
        image_a, image_b: image files (resized and centre-cropped) or tensors ``(3, H, W)`` at its image size.
        steps: how many interpolation points, endpoints included (at least 2).

    Returns:
        ``(steps, 3, H, W)`` reconstructions clamped to [0, 1].
    """
    if steps < 2:
        raise InvalidOption(f"interpolation needs at least 2 steps (the two endpoints), got {steps}")
    a, b = (inverter.features(_image(inverter, image)) for image in (image_a, image_b))
    t = torch.linspace(0, 1, steps, device=a.device).view(-1, *[1] * (a.dim() - 1))
    return inverter.decode((1 - t) * a + t * b).clamp(0, 1)


def write_interpolation_strip(inverter: DecoderInverter, image_a: Tensor | str | os.PathLike[str],
                              image_b: Tensor | str | os.PathLike[str], path: str | Path, steps: int = 8) -> Path:
    """Write one PNG row: image a, the ``steps`` reconstructions of :func:`interpolate`, image b; and beside it a
    JSON file (same name, ``.json``) saying what it shows, which ``repinv report`` shows with the PNG.

    The PNG is ``H + 4`` pixels high and ``(steps + 2)·(W + 2) + 2`` wide (see :func:`repinv.grids.write_image_table`).
    """
    ends = [_image(inverter, image).to(inverter.device) for image in (image_a, image_b)]
    frames = interpolate(inverter, ends[0], ends[1], steps=steps)
    strip = write_image_table([ends[0], *frames.unsqueeze(1), ends[1]], path)
    ends_named = [str(image) if not isinstance(image, Tensor) else "(tensor)" for image in (image_a, image_b)]
    write_json(strip.with_suffix(".json"), {"interpolation": ends_named, "steps": steps, "strip": strip.name,
                                            "representation": inverter.metadata.get("representation")})
    return strip
