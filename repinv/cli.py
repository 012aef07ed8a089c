"""The ``repinv`` command line: a thin layer over the Python API.

Library errors (:class:`repinv.errors.RepinvError`) become one clear line and exit status 1; warnings (skipped
images, plugin problems) are printed as one line each.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from .config import list_recipes, make_config
from .errors import RepinvError
from .options import parse_options
from .plugins import get_registry
from .progress import console

__all__ = ["cli", "main"]


class _Group(click.Group):
    """Turns library errors into one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        warnings.formatwarning = lambda message, category, *_: f"warning: {message}\n"
        try:
            return super().invoke(ctx)
        except RepinvError as error:
            raise click.ClickException(str(error)) from None


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


def _rows_table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


@cli.command()
@click.argument("pattern", default="*")
@click.option("--image-size", default=64, show_default=True, help="Image side for the feature shapes shown.")
def reps(pattern: str, image_size: int) -> None:
    """List representations (optionally matching PATTERN, e.g. 'alex*' or a family) with feature shapes."""
    from .representation import create_representation, list_representations, split_name

    registry = get_registry()
    rows, described = [], set()
    for name in list_representations(pattern):
        family = split_name(name)[0]
        entry = registry.representations[family]
        try:
            rep = create_representation(name)
            spec = rep.spec((image_size, image_size))
            shape, kind, grad = str(spec), spec.kind, "yes" if rep.differentiable else "no"
        except RepinvError as error:
            shape, kind, grad = f"({error})", "?", "?"
        rows.append([name, kind, shape, grad, "" if family in described else entry.description])
        described.add(family)  # a family's description once, on its first row
    if not rows:
        raise click.ClickException(f"no representation matches {pattern!r}; `repinv reps` lists them all")
    console.print(_rows_table(f"representations at {image_size}x{image_size}",
                              ["name", "kind", "features", "differentiable", "description"], rows))


@cli.command()
def plugins() -> None:
    """List loaded plugins and what each registered."""
    rows = [[plugin, ", ".join(f"{kind}: {', '.join(sorted(names))}" for kind, names in sorted(things.items()))]
            for plugin, things in sorted(get_registry().by_plugin().items())]
    console.print(_rows_table("plugins", ["plugin", "registered"], rows))


@cli.command()
@click.option("--recipe", help=f"A shipped recipe ({', '.join(list_recipes())}) or a .toml path; flags override it.")
@click.option("--rep", help="Representation to invert, e.g. hog, alexnet:fc8 (see `repinv reps`).")
@click.option("--rep-opt", "rep_opts", multiple=True, metavar="KEY=VALUE", help="Representation option (repeatable).")
@click.option("--decoder", help="Decoder architecture (default: conv for feature maps, fc for vectors).")
@click.option("--decoder-opt", "decoder_opts", multiple=True, metavar="KEY=VALUE", help="Decoder option (repeatable).")
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
@click.option("--finetune-encoder", is_flag=True, default=None, help="Train the representation too (autoencoder).")
@click.option("--time-budget", type=float, metavar="SECONDS", help="Stop cleanly after this long, with a checkpoint.")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", type=int, help="Seeds weights, data order and augmentation.")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default runs/REP-TIME).")
@click.option("--resume", type=click.Path(file_okay=False), help="Continue the run in this directory.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(recipe: str | None, rep_opts: tuple[str, ...], decoder_opts: tuple[str, ...], out: str | None,
          resume: str | None, quiet: bool, **flags: Any) -> None:
    """Train a decoder that inverts a representation.

    \b
    Examples:
        repinv train --recipe hog-64 --data 'shards/train-*.tar' --time-budget 600
        repinv train --rep alexnet:fc8 --rep-opt weights=none --data photos/
        repinv train --resume runs/hog-64 --steps 40000
    """
    from .train import resume as resume_run
    from .train import train as train_run

    flags.update(rep_options=parse_options(rep_opts, "--rep-opt"),
                 decoder_options=parse_options(decoder_opts, "--decoder-opt"),
                 data=list(flags["data"]), val_data=list(flags["val_data"]))
    if flags["features"] and (flags["data"] or flags["rep"] or flags["image_size"]):
        raise click.UsageError("--features takes the representation, images and image size from the cache; "
                               "drop --rep, --data and --image-size")
    if resume:
        if recipe:
            raise click.UsageError("--recipe cannot be combined with --resume: a resumed run keeps its settings")
        result = resume_run(resume, show_progress=not quiet, **flags)
    else:
        config = make_config(recipe, **flags)
        out = out or f"runs/{config.rep.replace(':', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
        result = train_run(config, out, show_progress=not quiet)
    how = "time budget reached" if result.stopped_by == "time_budget" else "done"
    console.print(f"[bold]{how}[/]: step {result.step}, loss {result.loss:.4f}, run in {result.run}")
    if result.validation:
        console.print(f"validation normalized error {result.validation['normalized_error']:.3f}")
    console.print(f"next: repinv evaluate --checkpoint {result.run} --data <held-out images>")


@cli.command()
@click.option("--rep", required=True, help="Representation, e.g. sift (see `repinv reps`).")
@click.option("--rep-opt", "rep_opts", multiple=True, metavar="KEY=VALUE", help="Representation option (repeatable).")
@click.option("--data", multiple=True, required=True, help="Images: folder, quoted tar glob, or builtin (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Cache directory (continued if partial).")
@click.option("--image-size", default=64, show_default=True, help="Side of the centre crops.")
@click.option("--shard-size", default=1024, show_default=True, help="Images per shard file.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option("--device", default="auto", show_default=True)
def features(rep: str, rep_opts: tuple[str, ...], data: tuple[str, ...], out: str, image_size: int, shard_size: int,
             batch_size: int, workers: int, device: str) -> None:
    """Compute a representation's features of fixed crops once, for `repinv train --features` (resumable).

    \b
    Example:
        repinv features --rep sift --data 'shards/train-*.tar' --out cache/sift
        repinv train --features cache/sift --recipe sift-64 --out runs/sift
    """
    from .features import cache_features

    cache = cache_features(rep, list(data), out, rep_options=parse_options(rep_opts, "--rep-opt"),
                           image_size=image_size, shard_size=shard_size, batch_size=batch_size, workers=workers,
                           device=device)
    console.print(f"wrote {cache.describe()} to {out}")
    console.print(f"next: repinv train --features {out} --out <run>")


@cli.command()
@click.option("--checkpoint", "run", required=True, type=click.Path(), help="Run directory (or its best/).")
@click.option("--data", multiple=True, default=("builtin:test",), show_default=True, help="Test images.")
@click.option("--limit", type=int, help="Evaluate at most this many images.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="JSON results (default RUN/evaluation.json).")
@click.option("--grid", type=click.Path(dir_okay=False),
              help="PNG of the first 8 test images beside their reconstructions (default RUN/evaluation.png).")
def evaluate(run: str, data: tuple[str, ...], limit: int | None, batch_size: int, workers: int, device: str,
             out: str | None, grid: str | None) -> None:
    """Score a trained decoder on test images beside the mean-image baseline."""
    from .evaluate import evaluate as score
    from .inverter import load

    inverter = load(run, device)
    grid_path = Path(grid) if grid else Path(run) / "evaluation.png"
    result = score(inverter, list(data), batch_size=batch_size, limit=limit, workers=workers, show_progress=True,
                   grid=grid_path)
    result.update(checkpoint=str(run), data=list(data))
    metrics = [("normalized_error", "normalized error ↓", "{:.4f}"), ("psnr", "PSNR dB ↑", "{:.2f}"),
               ("ssim", "SSIM ↑", "{:.4f}"), ("feature_error", "feature-space error ↓", "{:.4f}")]
    baseline = result.get("mean_image", {})
    rows = [[label, fmt.format(result["decoder"][key]) if key in result["decoder"] else "–",
             fmt.format(baseline[key]) if key in baseline else "–"] for key, label, fmt in metrics]
    console.print(_rows_table(f"{run} on {', '.join(data)} ({result['images']} images)",
                              ["metric", "decoder", "mean image"], rows))
    path = Path(out) if out else Path(run) / "evaluation.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {path} and {grid_path}")


@cli.command()
@click.option("--checkpoint", "run", required=True, type=click.Path(), help="Run directory.")
@click.argument("images", nargs=-1, type=click.Path())
@click.option("--features", type=click.Path(dir_okay=False),
              help="Decode features from a .safetensors file (key 'features', shape (B, ...)) instead of images.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the PNG reconstructions.")
@click.option("--device", default="auto", show_default=True)
def invert(run: str, images: tuple[str, ...], features: str | None, out: str, device: str) -> None:
    """Reconstruct IMAGES (or --features) with a trained decoder; writes one PNG per image."""
    from .inverter import load
    from .invert import invert_features, invert_images

    inverter = load(run, device)
    if bool(images) == bool(features):
        raise click.UsageError("give either IMAGES or --features FILE")
    written = invert_features(inverter, features, out) if features else invert_images(inverter, images, out)
    console.print(f"wrote {len(written)} reconstructions to {out}")


def main() -> None:
    """Entry point of the ``repinv`` console script."""
    cli(prog_name="repinv")
