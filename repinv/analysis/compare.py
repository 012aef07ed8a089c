"""Every inversion method on the same test images, on one error scale, timed in the same run.

Methods are named on the command line as ``KIND[:RUN]``:

* ``decoder:RUN`` — a trained decoder (:func:`repinv.load`);
* ``linear:RUN`` — the ridge baseline (:func:`repinv.baselines.load_linear`);
* ``optimize`` / ``optimize:RUN`` — Mahendran & Vedaldi's optimization (:mod:`repinv.optimize`), for the
  representation of RUN, else of ``rep``, else of the first decoder or linear run given;
* ``mean`` / ``mean:RUN`` — the mean training image of RUN (default: the first decoder or linear run given).

Every method must invert the same representation (name and options) at the same image size; the features of each
test image are computed once and given to every method, except to a decoder whose run fine-tuned its encoder
(``--finetune-encoder``, the paper's autoencoder): it gets its own encoder's features, as it was trained. Feature
errors are all measured with the one representation the others share, so they stay on one scale. Seconds per
image are the time each method takes to turn those features into images (features excluded, after a warm-up on the
first batch, CUDA synchronized), so the ratios between methods are fair. The metrics are :mod:`repinv.metrics`'
with one shared :class:`ErrorScale`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repinv.analysis.metrics import METRICS as ALL_METRICS
from repinv.analysis.scoring import Entry, score
from repinv.data.sources import evaluation_loader
from repinv.errors import InvalidOption
from repinv.files import atomic_write
from repinv.inversion.base import InversionMethod
from repinv.inversion.loading import load_inverter
from repinv.inversion.optimization import OptimizationInverter, OptimizeSettings
from repinv.losses.perceptual import Comparator
from repinv.pictures import write_image_table
from repinv.registry.factories import create_representation
from repinv.representations.base import Representation
from repinv.rundir import RunDir
from repinv.utils import resolve_device

__all__ = ["compare", "METHOD_KINDS", "METRICS"]

METHOD_KINDS = ("decoder", "optimize", "linear", "mean")
#: What a comparison reports, in table order (from the one list in :mod:`repinv.analysis.metrics`).
METRICS = tuple(metric for metric in ALL_METRICS if metric[0] != "feature_change")


@dataclass
class _Method:
    label: str  # as given, e.g. "decoder:runs/hog"
    kind: str
    run: str | None
    inverter: InversionMethod | None = None  # None until built (optimize is built for the shared representation)
    representation: dict[str, Any] | None = None  # {"name", "options"}
    image_size: tuple[int, int] | None = None


def _parse(spec: str) -> tuple[str, str | None]:
    kind, _, run = spec.partition(":")
    if kind not in METHOD_KINDS:
        raise InvalidOption(f"unknown method {spec!r}; use decoder:RUN, linear:RUN, optimize[:RUN] or mean[:RUN]")
    if kind in ("decoder", "linear") and not run:
        raise InvalidOption(f"method {kind} needs a run directory: {kind}:RUN")
    return kind, run or None


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["name"] == b["name"] and json.dumps(a["options"], sort_keys=True) == json.dumps(b["options"],
                                                                                          sort_keys=True)


def _build_methods(specs: Sequence[str], rep: str | None, rep_options: dict[str, Any], image_size: int | None,
                   device: torch.device, settings: OptimizeSettings) -> tuple[
                       list[_Method], Representation, dict[str, Any], tuple[int, int]]:
    """The methods, the representation that computes the test features, its identity and the image size."""
    parsed = [_parse(spec) for spec in specs]
    if not parsed:
        raise InvalidOption("give at least one --method (decoder:RUN, linear:RUN, optimize, mean)")
    if len(set(specs)) != len(specs):
        raise InvalidOption(f"a method is given twice: {', '.join(specs)}")
    first_run = next((run for kind, run in parsed if kind in ("decoder", "linear")), None)
    methods: list[_Method] = []
    for spec, (kind, run) in zip(specs, parsed):
        method = _Method(spec, kind, run)
        if kind == "mean" and not (run or first_run):
            raise InvalidOption("method mean needs a run with a mean image: mean:RUN, or a decoder:RUN or "
                                "linear:RUN beside it")
        source = run or first_run
        if kind != "optimize":
            method.inverter = load_inverter(kind, source, device=device)
            meta_rep = method.inverter.metadata["representation"]
            method.representation = {"name": meta_rep["name"], "options": method.inverter.representation.config()}
            method.image_size = method.inverter.image_size
        elif source:
            method.representation, method.image_size = RunDir(source).identity()
        methods.append(method)
    reference = next((m for m in methods if m.representation is not None and m.image_size is not None), None)
    identity: dict[str, Any]
    size: tuple[int, int]
    if reference is None or reference.representation is None or reference.image_size is None:
        if rep is None:
            raise InvalidOption("no method names a representation: give --rep (and --image-size) for optimize")
        built = create_representation(rep, **rep_options)
        identity = {"name": rep, "options": built.config()}
        size = (image_size or 64,) * 2
    else:
        identity, size = reference.representation, reference.image_size
        if rep is not None and not _same(identity, {"name": rep, "options":
                                                    create_representation(rep, **rep_options).config()}):
            raise InvalidOption(f"--rep {rep} differs from the representation of {reference.label} "
                                f"({identity['name']} {identity['options']})")
        if image_size is not None and (image_size, image_size) != tuple(size):
            raise InvalidOption(f"--image-size {image_size} differs from {reference.label}'s {size[0]}x{size[1]}")
    # A frozen run's representation module carries its weights (e.g. a local file's, which may have moved since);
    # without one, the representation is built by name.
    trained = next((m.inverter.representation for m in methods
                    if m.kind in ("decoder", "linear") and m.inverter is not None and not m.inverter.own_encoder), None)
    features = (trained if trained is not None else
                create_representation(identity["name"], **identity["options"])).to(device).eval()
    for method in methods:
        if method.representation is not None and not _same(method.representation, identity):
            raise InvalidOption(f"{method.label} inverts {method.representation['name']} "
                                f"{method.representation['options']}, but {reference.label if reference else '--rep'}"
                                f" inverts {identity['name']} {identity['options']}: compare one representation")
        if method.image_size is not None and tuple(method.image_size) != tuple(size):
            raise InvalidOption(f"{method.label} works at {method.image_size[0]}x{method.image_size[1]}, others at "
                                f"{size[0]}x{size[1]}")
        if method.kind == "optimize":
            method.inverter = OptimizationInverter(features, size, settings, device)
            method.representation, method.image_size = identity, size
    return methods, features, identity, (int(size[0]), int(size[1]))


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = ["method"] + [key for key, _, _ in METRICS]

    def write(p: Path) -> None:
        with open(p, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def compare(data: str | Sequence[str], methods: Sequence[str], *, rep: str | None = None,
            rep_options: dict[str, Any] | None = None, image_size: int | None = None,
            optimize_options: dict[str, Any] | None = None, limit: int | None = None, batch_size: int = 64,
            workers: int = 0, device: str | torch.device = "auto", seed: int = 0, out: str | Path | None = None,
            show_progress: bool = False, comparator: Comparator | None = None) -> dict[str, Any]:
    """Score several inversion methods on the same test images.

    Args:
        data: test sources (folders, tar globs, ``builtin:test``).
        methods: ``decoder:RUN``, ``linear:RUN``, ``optimize[:RUN]``, ``mean[:RUN]`` (see the module note).
        rep: the representation, when no method names a run (optimize alone).
        rep_options: its options.
        image_size: the image side, when no method names a run (default 64).
        optimize_options: settings of the optimization (:class:`repinv.optimize.OptimizeSettings` fields).
        limit: at most this many test images (the first ones).
        batch_size: images per batch, the same for every method.
        workers: data-loader worker processes.
        device: where every method runs (``"auto"``: CUDA when available).
        seed: seeds the reference sample of the error scale.
        out: a folder for ``compare.json``, ``compare.csv`` and ``compare.png`` (None: write nothing).
        show_progress: show a progress bar.
        comparator: also measure the perceptual error in this comparator's features (:class:`repinv.losses.Comparator`);
            the result then names it under ``"comparator"``.

    Returns:
        ``{"images", "data", "representation", "image_size", "device", "batch_size", "methods": [{"method",
        "kind", "normalized_error", "feature_error", "psnr", "ssim", "seconds_per_image"}, …], "files"}``.

    Raises:
        InvalidOption: unknown methods, or methods that invert different representations or sizes.
    """
    target = resolve_device(device)
    settings = OptimizeSettings.from_options(dict(optimize_options or {}))
    built, representation, identity, size = _build_methods(methods, rep, dict(rep_options or {}), image_size, target,
                                                           settings)
    loader = evaluation_loader(data, size, limit=limit, batch_size=batch_size, workers=workers,
                               pin_memory=target.type == "cuda")
    entries = [Entry(m.label, m.inverter) for m in built if m.inverter is not None]
    scores = score(loader, representation, entries, device=target, seed=seed, timed=True,
                   show_progress=show_progress, description="comparing", comparator=comparator)
    rows = [{"method": m.label, "kind": m.kind, **scores.metrics[m.label],
             "seconds_per_image": scores.seconds_per_image[m.label]} for m in built]
    result: dict[str, Any] = {
        "images": scores.images, "data": [data] if isinstance(data, str) else list(data),
        "representation": identity,
        "image_size": list(size), "device": str(target), "batch_size": batch_size,
        "comparator": comparator.name if comparator is not None else None,
        "optimize": settings.to_dict() if any(m.kind == "optimize" for m in built) else None,
        "methods": rows, "files": {},
    }
    if out is not None:
        folder = Path(out)
        kinds = [m.kind for m in built]
        # short headers: the kind, with the run's folder name where a kind repeats
        headers = [m.kind if kinds.count(m.kind) == 1 else f"{m.kind}:{Path(m.run or '').name}" for m in built]
        grid = write_image_table([scores.shown["images"], *(scores.shown[m.label] for m in built)],
                                 folder / "compare.png",
                                 labels=["image", *headers])
        _write_csv(folder / "compare.csv", rows)
        result["files"] = {"json": "compare.json", "csv": "compare.csv", "grid": grid.name}
        atomic_write(folder / "compare.json",
                     lambda p: p.write_text(json.dumps(result, indent=2) + "\n"))
    return result
