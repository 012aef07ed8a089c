"""Full-size photos inverted from HOG, LBP and SIFT by decoders trained on 64x64 crops: a grid and the errors.

    python bench/full_size.py                       # trains hog-64-conv, lbp-64-conv, sift-64-conv, 4 minutes each
    python bench/full_size.py --train-seconds 600 --out runs/full-size-10min

Trains each recipe on the shared Tiny ImageNet shards (skipped when its run is already there), then reconstructs
scikit-image's bundled photos, which none of the decoders saw, at their own sizes (``DecoderInverter.reconstruct``)
into one PNG (photo, HOG, LBP, SIFT per row, shown at one height), and scores the same photos at 64x64 and at full
size (``repinv evaluate --size native``), printing a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import shards, start, write_results
from PIL import Image, ImageDraw, ImageFont

from repinv import load_decoder, load_image, make_config, train
from repinv.analysis.evaluate import evaluate, full_size_scores
from repinv.data.indexing import builtin_files
from repinv.rundir import RunDir

# The paper's conv decoder, as in docs/findings.md (where these recipes were hog-64, lbp-64 and sift-64).
RECIPES = {"HOG": "hog-64-conv", "LBP": "lbp-64-conv", "SIFT": "sift-64-conv"}
SHOWN = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")
ROW_HEIGHT = 240


def _picture(image: torch.Tensor, height: int) -> Image.Image:
    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    picture = Image.fromarray(array)
    return picture.resize((round(picture.width * height / picture.height), height), Image.Resampling.LANCZOS)


def grid(rows: list[list[torch.Tensor]], labels: list[str], path: Path) -> None:
    """One PNG: a header of labels, then each row's images side by side at one height."""
    pictures = [[_picture(image, ROW_HEIGHT) for image in row] for row in rows]
    width = max(sum(p.width for p in row) + 4 * (len(row) + 1) for row in pictures)
    header = 28
    canvas = Image.new("RGB", (width, header + sum(ROW_HEIGHT + 4 for _ in rows) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=18)
    for row_index, row in enumerate(pictures):
        left, top = 4, header + 4 + row_index * (ROW_HEIGHT + 4)
        for column, picture in enumerate(row):
            canvas.paste(picture, (left, top))
            if row_index == 0:
                draw.text((left + 4, 4), labels[column], fill="black", font=font)
            left += picture.width + 4
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-seconds", type=float, default=240, help="time budget of each training run")
    parser.add_argument("--out", type=Path, default=Path("runs/full-size"), help="runs, grid and results")
    args = parser.parse_args(argv)
    header = start(f"Full-size inversion from decoders trained on 64x64 crops ({args.train_seconds:g} s each)")
    root = shards()
    if root is None:
        raise SystemExit("the shared Tiny ImageNet shards are absent (set REPINV_SHARED_DATA)")
    inverters = {}
    for name, recipe in RECIPES.items():
        run = args.out / recipe
        if not RunDir(run).holds_decoder():
            train(make_config(recipe, data=[str(root / "train-*.tar")], time_budget=args.train_seconds), run)
        inverters[name] = load_decoder(run, "cpu")
    files = builtin_files("builtin:all") or []
    shown = [path for name in SHOWN for path in files if path.name == name]
    rows = []
    with torch.no_grad():
        for path in shown:
            photo = load_image(path)
            rows.append([photo, *(inverter.reconstruct(photo[None])[0] for inverter in inverters.values())])
    picture = args.out / "full-size.png"
    grid(rows, ["photo", *inverters], picture)
    scores = {name: {"64x64": evaluate(inverter, "builtin:all")["decoder"],
                     "full size": full_size_scores(inverter, "builtin:all")} for name, inverter in inverters.items()}
    print("\n| representation | normalized error at 64x64 | at full size | PSNR at 64x64 | at full size |")
    print("|---|---|---|---|---|")
    for name, score in scores.items():
        small, full = score["64x64"], score["full size"]["decoder"]
        print(f"| {name} | {small['normalized_error']:.3f} | {full['normalized_error']:.3f} | {small['psnr']:.2f} | "
              f"{full['psnr']:.2f} |")
    print(f"\ngrid: {picture}")
    write_results(args.out / "full-size.json", "full_size.json", {**header, "train_seconds": args.train_seconds,
                                                                  "photos": [p.name for p in files],
                                                                  "scores": scores})


if __name__ == "__main__":
    main()
