"""The ``repinv`` command line: a thin layer over the Python API.

Library errors (:class:`repinv.errors.RepinvError`) become one clear line and exit status 1; warnings (skipped
images, plugin problems) are printed as one line each.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from repinv.errors import RepinvError
from repinv.losses.base import list_losses
from repinv.options import parse_options
from repinv.progress import console
from repinv.registry.manager import get_registry
from repinv.rundir import RunDir
from repinv.training.config import list_recipes, load_recipe, make_config

__all__ = ["cli", "main"]


class _Group(click.Group):
    """Turns library errors, and bad command-line usage, into one line instead of a traceback or a usage screen."""

    def invoke(self, ctx: click.Context) -> Any:
        warnings.formatwarning = lambda message, category, *_: f"warning: {message}\n"
        try:
            return super().invoke(ctx)
        except RepinvError as error:
            raise click.ClickException(str(error)) from None
        except click.UsageError as error:
            command = error.ctx.command_path if error.ctx else "repinv"
            raise click.ClickException(f"{error.format_message()} (see `{command} --help`)") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="repinv")
def cli() -> None:
    """Invert image representations with up-convolutional networks.

    Train a decoder that reconstructs images from a representation's features, then use it to see what the
    features keep. A first run needs no data (it uses photos bundled with scikit-image):

    \b
        repinv train --recipe demo --out runs/demo
        repinv evaluate --checkpoint runs/demo --data builtin:test
        repinv invert --checkpoint runs/demo photo.jpg --out recon/
    """


#: Values up to this long (numbers, shapes, yes/no) are never wrapped in a table.
SHORT_VALUE = 16


def _rows_table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    """A results table that never cuts a value: the first column (the names a user copies) never wraps; the others
    fold long words rather than cut them, short values (numbers, shapes) keep their width, and the last column
    (descriptions) gives way first. Headers may wrap."""
    table = Table(title=title)
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(len(columns))]
    table.add_column(columns[0], no_wrap=True, min_width=max(widths[0], len(columns[0])))
    for column, width in zip(columns[1:-1], widths[1:-1]):
        table.add_column(column, overflow="fold", min_width=min(width, SHORT_VALUE))
    if len(columns) > 1:
        table.add_column(columns[-1], overflow="fold", ratio=1)
    for row in rows:
        table.add_row(*row)
    return table


@cli.command()
@click.argument("pattern", default="*")
@click.option("--image-size", default=64, show_default=True, help="Image side for the feature shapes shown.")
@click.option("--names", "names_only", is_flag=True, help="Only the names, one per line (for scripts).")
def reps(pattern: str, image_size: int, names_only: bool) -> None:
    """List representations (optionally matching PATTERN, e.g. 'alex*' or a family) with feature shapes."""
    from repinv.registry.factories import create_representation, list_representations
    from repinv.representations.base import split_name

    registry = get_registry()
    names = list_representations(pattern)
    if not names:
        raise click.ClickException(f"no representation matches {pattern!r}; `repinv reps` lists them all")
    if names_only:
        click.echo("\n".join(names))
        return
    rows = []
    for name in names:
        try:
            rep = create_representation(name)
            spec = rep.spec((image_size, image_size))
            shape, kind, grad = str(spec), str(spec.kind), "yes" if rep.differentiable else "no"
        except RepinvError as error:
            shape, kind, grad = f"({error})", "?", "?"
        rows.append([name, kind, shape, grad])
    console.print(_rows_table(f"representations at {image_size}x{image_size}",
                              ["name", "kind", "features", "differentiable"], rows))
    # Descriptions below the table, a family each: a column of them would squeeze the names on a narrow terminal.
    for family in dict.fromkeys(split_name(name)[0] for name in names):
        console.print(f"[bold]{family}[/]: {registry.representations[family].description}", highlight=False)


@cli.command()
def plugins() -> None:
    """List loaded plugins and what each registered."""
    rows = [[plugin, ", ".join(f"{kind}: {', '.join(sorted(names))}" for kind, names in sorted(things.items()))]
            for plugin, things in sorted(get_registry().by_plugin().items())]
    console.print(_rows_table("plugins", ["plugin", "registered"], rows))


@cli.command()
def losses() -> None:
    """List the loss terms `repinv train --loss` can combine."""
    console.print(_rows_table("loss terms", ["term", "description"], [[name, description] for name, description
                                                                       in list_losses().items()]))


def _per_term(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"feature.rep": X}`` as ``{"feature": {"rep": X}}``."""
    terms: dict[str, dict[str, Any]] = {}
    for key, value in options.items():
        term, dot, name = key.partition(".")
        if not dot or not term or not name:
            raise click.UsageError(f"--loss-opt takes TERM.KEY=VALUE (e.g. feature.rep=NAME), got {key}={value}")
        terms.setdefault(term, {})[name] = value
    return terms


def perceptual_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The comparator options that evaluate, analyze and compare share."""
    command = click.option("--perceptual-opt", "perceptual_opts", multiple=True, metavar="KEY=VALUE",
                           help="Option of the --perceptual comparator, e.g. weights=FILE, input_size=64.")(command)
    return click.option("--perceptual", metavar="REP",
                        help="Also report the perceptual error in this differentiable representation's features, "
                             "e.g. timm:tf_efficientnet_lite0:blocks.5 (frozen).")(command)


def _comparator(perceptual: str | None, perceptual_opts: tuple[str, ...]) -> Any:
    """The --perceptual comparator, or None."""
    if not perceptual:
        if perceptual_opts:
            raise click.UsageError("--perceptual-opt needs --perceptual REP")
        return None
    from repinv.losses.perceptual import Comparator

    comparator = Comparator(perceptual, **parse_options(perceptual_opts, "--perceptual-opt"))
    console.print(f"perceptual error in the features of {comparator.name}", highlight=False)
    return comparator


@cli.command()
@click.option("--recipe", help=f"A shipped recipe ({', '.join(list_recipes())}) or a .toml path; flags override it.")
@click.option("--rep", help="Representation to invert, e.g. hog, alexnet:fc8 (see `repinv reps`).")
@click.option("--rep-opt", "rep_opts", multiple=True, metavar="KEY=VALUE", help="Representation option (repeatable).")
@click.option("--decoder", help="Decoder architecture: conv, residual or fc (default: conv for feature maps, fc for "
                                 "vectors).")
@click.option("--decoder-opt", "decoder_opts", multiple=True, metavar="KEY=VALUE", help="Decoder option (repeatable).")
@click.option("--loss", help="Training loss: terms joined by +, e.g. 'mse + 0.01*feature' (see `repinv losses`; "
                              "default mse, the paper's).")
@click.option("--loss-opt", "loss_opts", multiple=True, metavar="TERM.KEY=VALUE",
              help="Loss term option, e.g. feature.rep=timm:tf_efficientnet_lite0:blocks.3 (repeatable).")
@click.option("--init", type=click.Path(file_okay=False),
              help="Start the decoder from this run's weights (fine-tuning; same representation and decoder).")
@click.option("--data", multiple=True, help="Training images: folder, quoted tar glob, or builtin (repeatable).")
@click.option("--features", type=click.Path(file_okay=False),
              help="Train from a feature cache (`repinv features`) instead of --data; it sets --rep and --image-size.")
@click.option("--augment/--no-augment", default=None, help="Random crops and flips (default), or fixed centre crops.")
@click.option("--val-data", multiple=True, help="Validation images; keeps the best checkpoint in RUN/best.")
@click.option("--image-size", type=int, help="Training crop side in pixels.")
@click.option("--output-size", type=int, help="Decoder output side (default: the image size).")
@click.option("--scale", type=float, nargs=2, metavar="LO HI",
              help="Random zoom range before cropping, e.g. 1 3 (data augmentation; default 1 1).")
@click.option("--steps", type=int, help="Optimizer steps.")
@click.option("--epochs", type=float, help="Passes over the data (when --steps is not given).")
@click.option("--batch-size", type=int, help="Images per step.")
@click.option("--lr", type=float, help="Adam learning rate.")
@click.option("--width", type=float, help="Decoder width multiplier (1.0 = the paper's channels).")
@click.option("--workers", type=int, help="Data-loader worker processes.")
@click.option("--compile/--no-compile", "compile", default=None,
              help="torch.compile the decoder's step (falls back with one line where it fails).")
@click.option("--mixed-precision", type=click.Choice(["cuda", "auto", "all", "none"]),
              help="Run the decoder under bfloat16 autocast on GPUs (cuda, the default), also on CPUs with bfloat16 "
                   "instructions (auto), everywhere, or never.")
@click.option("--feature-batch", type=int,
              help="Compute on-the-fly features for this many images at a time, over several steps (default 64).")
@click.option("--finetune-encoder", is_flag=True, default=None, help="Train the representation too (autoencoder).")
@click.option("--time-budget", type=float, metavar="SECONDS",
              help="Stop cleanly, with a checkpoint, after this many seconds of training in all (a resumed run's "
                   "sessions add up).")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", type=int, help="Seeds weights, data order and augmentation.")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default runs/REP-TIME).")
@click.option("--resume", type=click.Path(file_okay=False), help="Continue the run in this directory.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(recipe: str | None, rep_opts: tuple[str, ...], decoder_opts: tuple[str, ...], loss_opts: tuple[str, ...],
          out: str | None, resume: str | None, quiet: bool, **flags: Any) -> None:
    """Train a decoder that inverts a representation.

    \b
    Examples:
        repinv train --recipe hog-64 --data 'shards/train-*.tar' --time-budget 600
        repinv train --rep alexnet:fc8 --rep-opt weights=none --data photos/
        repinv train --resume runs/hog-64 --steps 40000
        repinv train --recipe hog-64 --init runs/hog-64 --loss 'mse + 0.01*feature' \\
            --loss-opt feature.rep=timm:tf_efficientnet_lite0:blocks.3 --loss-opt feature.weights=lite0.safetensors
    """
    from repinv.data.cache_format import read_manifest
    from repinv.training.loop import resume as resume_run
    from repinv.training.loop import train as train_run

    flags.update(rep_options=parse_options(rep_opts, "--rep-opt"),
                 decoder_options=parse_options(decoder_opts, "--decoder-opt"),
                 loss_options=_per_term(parse_options(loss_opts, "--loss-opt")),
                 data=list(flags["data"]), val_data=list(flags["val_data"]))
    if flags["features"] and (flags["data"] or flags["rep"] or flags["image_size"]):
        raise click.UsageError("--features takes the representation, images and image size from the cache; "
                               "drop --rep, --data and --image-size")
    if resume:
        if recipe:
            raise click.UsageError("--recipe cannot be combined with --resume: a resumed run keeps its settings")
        result = resume_run(resume, show_progress=not quiet, **flags)
    else:
        if not (flags["data"] or flags["features"] or (recipe and load_recipe(recipe).get("data"))):
            # The library's default (the bundled photos) would start a long run on five photos unasked.
            raise click.ClickException("no training data: give --data FOLDER (or a quoted 'shards/train-*.tar' "
                                       "glob), or --data builtin to train on the photos bundled with scikit-image")
        config = make_config(recipe, **flags)
        rep = read_manifest(config.features)["representation"]["name"] if config.features else config.rep
        out = out or f"runs/{rep.replace(':', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
        result = train_run(config, out, show_progress=not quiet)
    if not result.main:
        return  # under torchrun, rank 0 reports
    how = "time budget reached" if result.stopped_by == "time_budget" else "done"
    console.print(f"[bold]{how}[/]: step {result.step}, loss {result.loss:.4f}, run in {result.run}")
    if result.validation:
        console.print(f"validation normalized error {result.validation['normalized_error']:.3f}")
    console.print(f"next: repinv evaluate --checkpoint {result.run} --data <held-out images>")


@cli.command()
@click.option("--rep", "reps", multiple=True, required=True,
              help="Representation, e.g. sift (see `repinv reps`); repeat for one cache each from one pass.")
@click.option("--rep-opt", "rep_opts", multiple=True, metavar="KEY=VALUE",
              help="Representation option (repeatable; for every --rep).")
@click.option("--data", multiple=True, required=True, help="Images: folder, quoted tar glob, or builtin (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Cache directory (continued if partial); with several --rep, their parent.")
@click.option("--image-size", default=64, show_default=True, help="Side of the centre crops.")
@click.option("--shard-size", default=1024, show_default=True, help="Images per shard file.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32", show_default=True,
              help="How feature values are stored: float32 exactly, float16/bfloat16 in half the space.")
def features(reps: tuple[str, ...], rep_opts: tuple[str, ...], data: tuple[str, ...], out: str, image_size: int,
             shard_size: int, batch_size: int, workers: int, device: str, dtype: str) -> None:
    """Compute a representation's features of fixed crops once, for `repinv train --features` (resumable).

    \b
    Example:
        repinv features --rep sift --data 'shards/train-*.tar' --out cache/sift
        repinv train --features cache/sift --recipe sift-64 --out runs/sift
        repinv features --rep timm:resnet18:layer2 --rep timm:resnet18:layer3 --data d.tar --out cache/resnet18
    """
    from repinv.data.cache import cache_features

    settings: dict[str, Any] = dict(rep_options=parse_options(rep_opts, "--rep-opt"), image_size=image_size,
                                    shard_size=shard_size, batch_size=batch_size, workers=workers, device=device,
                                    dtype=dtype)
    if len(reps) > 1:
        caches = cache_features(list(reps), list(data), out, **settings)
        for cache in caches:
            console.print(f"wrote {cache.describe()} to {cache.path}")
        console.print(f"next: repinv train --features {caches[0].path} --out <run>")
        return
    cache = cache_features(reps[0], list(data), out, **settings)
    console.print(f"wrote {cache.describe()} to {out}")
    console.print(f"next: repinv train --features {out} --out <run>")


@cli.command()
@click.option("--checkpoint", "run", required=True, type=click.Path(), help="Run directory (or its best/).")
@click.option("--data", multiple=True, default=("builtin:test",), show_default=True, help="Test images.")
@click.option("--limit", type=int, help="Evaluate at most this many images.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False),
              help=f"JSON results (default {RunDir('RUN').evaluation_file}).")
@click.option("--grid", type=click.Path(dir_okay=False),
              help="PNG of the first 8 test images beside their reconstructions "
                   f"(default {RunDir('RUN').evaluation_grid}).")
@click.option("--size", type=click.Choice(["training", "native"]), default="training", show_default=True,
              help="native: also score the photos at their own sizes, with an error that does not depend on size "
                   "(runs whose features follow the image size, with a conv decoder).")
@perceptual_options
def evaluate(run: str, data: tuple[str, ...], limit: int | None, batch_size: int, workers: int, device: str,
             out: str | None, grid: str | None, size: str, perceptual: str | None,
             perceptual_opts: tuple[str, ...]) -> None:
    """Score a trained decoder on test images beside the mean-image baseline."""
    from repinv.analysis.evaluate import evaluate as score
    from repinv.analysis.evaluate import full_size_scores
    from repinv.analysis.metrics import metric_columns
    from repinv.files import write_json
    from repinv.inversion.decoder import load_decoder
    from repinv.rundir import RunDir

    inverter = load_decoder(run, device)
    grid_path = Path(grid) if grid else RunDir(run).evaluation_grid
    result = score(inverter, list(data), batch_size=batch_size, limit=limit, workers=workers, show_progress=True,
                   grid=grid_path, comparator=_comparator(perceptual, perceptual_opts))
    result.update(checkpoint=str(run), data=list(data))
    baseline = result.get("mean_image", {})
    rows = [[label, fmt.format(result["decoder"][key]) if key in result["decoder"] else "–",
             fmt.format(baseline[key]) if key in baseline else "–"]
            for key, label, fmt in metric_columns([result["decoder"]])]
    if size == "native":
        full = result["full_size"] = full_size_scores(inverter, list(data), limit=limit, show_progress=True)
        rows += [[f"{label}, full size", fmt.format(full["decoder"][key]),
                  fmt.format(full["mean_image"][key]) if "mean_image" in full else "–"]
                 for key, label, fmt in metric_columns([full["decoder"]])]
    console.print(_rows_table(f"{run} on {', '.join(data)} ({result['images']} images)",
                              ["metric", "decoder", "mean image"], rows))
    path = Path(out) if out else RunDir(run).evaluation_file
    write_json(path, result)
    console.print(f"wrote {path} and {grid_path}")


@cli.command()
@click.option("--checkpoint", "runs", multiple=True, type=click.Path(),
              help="Run directory (repeatable: the layers of one network give a per-layer plot).")
@click.option("--data", multiple=True, default=("builtin:test",), show_default=True,
              help="Test images; for --sample, the images the feature model is fitted on.")
@click.option("--perturb", "perturbations", multiple=True, metavar="NAME[:ARG]",
              help="Perturbation (repeatable; see --list). Default, without --interpolate/--sample: binarize, dropout.")
@click.option("--list", "list_only", is_flag=True, help="List the registered perturbations and exit.")
@click.option("--interpolate", nargs=2, type=click.Path(dir_okay=False), metavar="A B",
              help="Reconstruct interpolations between the features of images A and B (one PNG strip).")
@click.option("--steps", default=8, show_default=True, help="Interpolation points, endpoints included.")
@click.option("--sample", type=click.Choice(["histogram", "gaussian"]),
              help="Decode random feature vectors drawn from this model of the real features.")
@click.option("--n", "count", default=16, show_default=True, help="Random feature vectors to decode.")
@click.option("--alpha", default=1.0, show_default=True, help="Multiplies the random feature vectors (contrast).")
@click.option("--limit", type=int,
              help="Use at most this many images (perturbations: the first ones; --sample: default 4096, at random).")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--workers", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True, help="Seeds the perturbations and the random features.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Output folder (default RUN/analysis; required with several checkpoints).")
@perceptual_options
def analyze(runs: tuple[str, ...], data: tuple[str, ...], perturbations: tuple[str, ...], list_only: bool,
            interpolate: tuple[str, str] | None, steps: int, sample: str | None, count: int, alpha: float,
            limit: int | None, batch_size: int, workers: int, device: str, seed: int, out: str | None,
            perceptual: str | None, perceptual_opts: tuple[str, ...]) -> None:
    """Study what a representation keeps: perturbed features, interpolations, random feature vectors.

    \b
    Examples:
        repinv analyze --checkpoint runs/hog --perturb binarize --perturb dropout:0.3
        repinv analyze --checkpoint runs/conv5 --checkpoint runs/fc8 --data val/ --out study/
        repinv analyze --checkpoint runs/fc8 --perturb keep-top:5 --perturb drop-top:5
        repinv analyze --checkpoint runs/hog --interpolate a.jpg b.jpg --steps 8
        repinv analyze --checkpoint runs/fc8 --data train/ --sample histogram --n 16 --alpha 2
    """
    from repinv.analysis.metrics import metric_columns
    from repinv.analysis.random_features import sample_images
    from repinv.analysis.studies import REFERENCE, checkpoint_labels, slug, write_interpolation_strip
    from repinv.analysis.studies import analyze as study
    from repinv.inversion.decoder import load_decoder
    from repinv.rundir import RunDir

    if list_only:
        rows = [[e.name, e.plugin, e.description] for e in get_registry().perturbations.values()]
        console.print(_rows_table("perturbations (NAME[:ARG])", ["name", "plugin", "what it does"], rows))
        return
    if not runs or (len(runs) > 1 and not out):
        raise click.UsageError("give --checkpoint RUN (and --out DIR when there are several)")
    folder = Path(out) if out else RunDir(runs[0]).analysis_folder
    if perturbations or not (interpolate or sample):
        result = study(list(runs), list(data), list(perturbations) or ["binarize", "dropout"], out=folder,
                       device=device, batch_size=batch_size, limit=limit, workers=workers, seed=seed,
                       show_progress=True, comparator=_comparator(perceptual, perceptual_opts))
        for entry in result["checkpoints"]:
            named = {**entry["results"], **({"mean image": entry["baseline"]} if entry["baseline"] else {})}
            columns = metric_columns(list(named.values()))
            rows = [[name] + [fmt.format(scores[key]) if key in scores else "–" for key, _, fmt in columns]
                    for name, scores in named.items()]
            console.print(_rows_table(f"{entry['label']} on {', '.join(data)} ({entry['images']} images)",
                                      ["features", *(label for _, label, _ in columns)], rows))
        console.print(f"reference row: {REFERENCE}; wrote {', '.join(result['files'])}")
    for run, label in zip(runs, checkpoint_labels(list(runs)) if interpolate or sample else []):
        inverter = load_decoder(run, device)
        if interpolate:
            strip = folder / f"interpolation-{slug(label)}.png"
            console.print(f"wrote {write_interpolation_strip(inverter, *interpolate, strip, steps)}")
        if sample:
            grid = folder / f"samples-{sample}-{slug(label)}.png"
            _, summary = sample_images(inverter, list(data), sample, count, alpha=alpha, limit=limit or 4096,
                                       batch_size=batch_size, workers=workers, seed=seed, show_progress=True, grid=grid)
            console.print(f"{label}: {count} random {sample} features (sparsity {summary['sample_sparsity']:.3f}, "
                          f"real {summary['real_sparsity']:.3f}, fitted on {summary['images']} images); wrote {grid}")


@cli.command()
@click.option("--checkpoint", "run", type=click.Path(), help="Run directory (decoder or linear baseline).")
@click.option("--method", type=click.Choice(["decoder", "optimize", "linear"]), default="decoder", show_default=True,
              help="A trained decoder, Mahendran & Vedaldi's optimization, or the linear baseline.")
@click.option("--rep", help="Representation for --method optimize (default: the --checkpoint run's).")
@click.option("--rep-opt", "rep_opts", multiple=True, metavar="KEY=VALUE", help="Representation option (repeatable).")
@click.option("--opt", "optimize_opts", multiple=True, metavar="KEY=VALUE",
              help="Optimization setting, e.g. steps=200 (repeatable; see "
                   "repinv.inversion.optimization.OptimizeSettings).")
@click.option("--image-size", type=int, help="Image side for --method optimize with --rep (default 64).")
@click.argument("images", nargs=-1, type=click.Path())
@click.option("--features", type=click.Path(dir_okay=False),
              help="Decode features from a .safetensors file (key 'features', shape (B, ...)) instead of images.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the PNG reconstructions.")
@click.option("--size", type=click.Choice(["auto", "native", "training"]), default="auto", show_default=True,
              help="native: each photo at its own size (features that follow the image size, a conv decoder); "
                   "training: resized and cropped to the training size; auto: native where the run can.")
@click.option("--device", default="auto", show_default=True)
def invert(run: str | None, method: str, rep: str | None, rep_opts: tuple[str, ...], optimize_opts: tuple[str, ...],
           image_size: int | None, images: tuple[str, ...], features: str | None, out: str, size: str,
           device: str) -> None:
    """Reconstruct IMAGES (files, or builtin:test for the bundled held-out photos) or --features; writes one PNG
    per image.

    \b
    Examples:
        repinv invert --checkpoint runs/hog photo.jpg --out recon/          # at the photo's own size
        repinv invert --checkpoint runs/hog photo.jpg --size training --out recon/   # 64x64, as trained
        repinv invert --method optimize --rep hog --opt steps=200 photo.jpg --out recon/
        repinv invert --method linear --checkpoint runs/hog-linear photo.jpg --out recon/
    """
    from repinv.data.indexing import builtin_files
    from repinv.inversion.images import invert_features, invert_images
    from repinv.inversion.loading import load_inverter
    from repinv.inversion.optimization import OptimizeSettings

    if bool(images) == bool(features):
        raise click.UsageError("give either IMAGES or --features FILE")
    if method != "optimize" and (rep or rep_opts or optimize_opts or image_size):
        raise click.UsageError("--rep, --rep-opt, --opt and --image-size go with --method optimize")
    inverter = load_inverter(method, run, rep=rep, rep_options=parse_options(rep_opts, "--rep-opt"),
                             image_size=image_size,
                             settings=OptimizeSettings.from_options(parse_options(optimize_opts, "--opt")),
                             device=device, show_progress=True)
    paths: list[str | Path] = []
    for image in images:
        builtin = builtin_files(image)
        paths += [image] if builtin is None else builtin
    written = invert_features(inverter, features, out) if features else invert_images(inverter, paths, out, size=size)
    console.print(f"wrote {len(written)} reconstructions to {out}" +
                  (": " + ", ".join(map(str, written)) if len(written) <= 4 else ""), soft_wrap=True)


@cli.command("fit-linear")
@click.option("--rep", required=True, help="Representation, e.g. hog (see `repinv reps`).")
@click.option("--rep-opt", "rep_opts", multiple=True, metavar="KEY=VALUE", help="Representation option (repeatable).")
@click.option("--data", multiple=True, required=True, help="Training images: folder, quoted tar glob, or builtin.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@click.option("--image-size", default=64, show_default=True, help="Side of the centre crops.")
@click.option("--limit", type=int, help="Use at most this many training images.")
@click.option("--ridge", default="auto", show_default=True,
              help="auto (chosen on every 10th image, held out) or λ relative to the mean eigenvalue, e.g. 0.01.")
@click.option("--projection", type=int, help="Hash features to this many dimensions (default: only above 20,000).")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option("--device", default="auto", show_default=True)
def fit_linear(rep: str, rep_opts: tuple[str, ...], data: tuple[str, ...], out: str, image_size: int,
               limit: int | None, ridge: str, projection: int | None, batch_size: int, workers: int,
               device: str) -> None:
    """Fit the linear (ridge regression) baseline from features to pixels; writes a run directory.

    \b
    Example:
        repinv fit-linear --rep hog --data 'shards/train-*.tar' --limit 20000 --out runs/hog-linear
        repinv compare --data shards/val-000.tar --method decoder:runs/hog --method linear:runs/hog-linear
    """
    from repinv.inversion.linear import fit_linear as fit

    try:
        strength: float | str = ridge if ridge == "auto" else float(ridge)
    except ValueError:
        raise click.BadParameter(f"{ridge!r} is neither auto nor a number", param_hint="--ridge") from None
    model = fit(rep, list(data), out, rep_options=parse_options(rep_opts, "--rep-opt"), image_size=image_size,
                limit=limit, ridge=strength, projection=projection, batch_size=batch_size, workers=workers,
                device=device, show_progress=True)
    chosen = model.metadata["ridge"]
    console.print(f"fitted on {model.metadata['images']:,} images, λ = {chosen['lambda']:.4g} "
                  f"({chosen['relative']:.3g} × mean eigenvalue; {chosen['rule']}); wrote {out}")
    console.print(f"next: repinv compare --data <held-out images> --method linear:{out} --method mean:{out}")


@cli.command()
@click.option("--data", multiple=True, required=True, help="Test images: folder, quoted tar glob, or builtin:test.")
@click.option("--method", "methods", multiple=True, required=True, metavar="KIND[:RUN]",
              help="decoder:RUN, linear:RUN, optimize[:RUN] or mean[:RUN] (repeatable; one column each).")
@click.option("--rep", help="Representation, when no method names a run (optimize alone).")
@click.option("--rep-opt", "rep_opts", multiple=True, metavar="KEY=VALUE", help="Representation option (repeatable).")
@click.option("--opt", "optimize_opts", multiple=True, metavar="KEY=VALUE",
              help="Optimization setting, e.g. steps=200 (repeatable).")
@click.option("--image-size", type=int, help="Image side, when no method names a run (default 64).")
@click.option("--limit", type=int, help="Compare on at most this many test images.")
@click.option("--batch-size", default=64, show_default=True, help="Images per batch, the same for every method.")
@click.option("--workers", default=2, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for compare.json, compare.csv and compare.png.")
@perceptual_options
def compare(data: tuple[str, ...], methods: tuple[str, ...], rep: str | None, rep_opts: tuple[str, ...],
            optimize_opts: tuple[str, ...], image_size: int | None, limit: int | None, batch_size: int,
            workers: int, device: str, out: str, perceptual: str | None, perceptual_opts: tuple[str, ...]) -> None:
    """Score inversion methods on the same test images: errors, PSNR, SSIM and seconds per image.

    \b
    Example:
        repinv compare --data shards/val-000.tar --limit 256 --method decoder:runs/hog \\
            --method optimize --method linear:runs/hog-linear --method mean --out results/hog
    """
    from repinv.analysis.compare import compare as run_compare
    from repinv.analysis.metrics import metric_columns

    result = run_compare(list(data), list(methods), rep=rep, rep_options=parse_options(rep_opts, "--rep-opt"),
                         image_size=image_size, optimize_options=parse_options(optimize_opts, "--opt"), limit=limit,
                         batch_size=batch_size, workers=workers, device=device, out=out, show_progress=True,
                         comparator=_comparator(perceptual, perceptual_opts))
    columns = metric_columns(result["methods"])
    rows = [[row["method"]] + [fmt.format(row[key]) if key in row else "–" for key, _, fmt in columns]
            for row in result["methods"]]
    console.print(_rows_table(f"{result['representation']['name']} on {', '.join(data)} ({result['images']} images, "
                              f"{result['device']})", ["method"] + [label for _, label, _ in columns], rows))
    console.print(f"wrote {out}/compare.json, compare.csv and compare.png")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Folder for report.html (or a path ending in .html).")
@click.option("--title", default="repinv report", show_default=True)
def report(paths: tuple[str, ...], out: str, title: str) -> None:
    """One self-contained HTML page about RUN directories and result JSON files (compare, analyze, evaluate).

    \b
    Example:
        repinv report runs/hog results/hog/compare.json --out report/
    """
    from repinv.analysis.report import report as write_report

    page = write_report(list(paths), out, title=title)
    console.print(f"wrote {page}")


def main() -> None:
    """Entry point of the ``repinv`` console script."""
    cli(prog_name="repinv")
