"""Peak memory of a training run against the size of its data set: 10,000 vs 50,000 images, tar shards and folders.

    python bench/memory.py                        # hog-64, 200 steps, 10k vs 50k images, tar and folder: ~3 minutes
    python bench/memory.py --sizes 10000 25000 50000 --kinds tar --workers 0 2

repinv streams its data: the index of a data set is a few numpy arrays (no Python object per image), tar shards are
read by seek + read, and nothing decoded is kept beyond 32 images. So a run's peak resident memory should not
depend on how many images the data set has. Each measurement is one ``repinv train --recipe hog-64 --steps N``
process on the first ``SIZE`` images of the shared Tiny ImageNet training shards, copied into one tar shard (``tar``)
or unpacked into a folder of JPEG files (``folder``); its peak resident set comes from ``wait4`` (with loader
workers, the largest of the processes, not their sum: each worker is a forked copy that shares most pages). For
scale, the table also gives the peak of a process that only imports repinv and computes HOG once: most of a run's
memory is the Python, torch and plugin libraries, the same for any data.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from common import display, mib, print_table, repinv_command, run_child, shards, start, subset_tar, write_results

from repinv.progress import console, progress_bar

#: The issue's target: peak memory on the largest data set within this fraction of that on the smallest.
TARGET = 0.10
_FLOOR = "import torch, repinv; repinv.create_representation('hog')(torch.rand(16, 3, 64, 64))"


def data_set(kind: str, size: int, root: Path, workdir: Path) -> str:
    """The first ``size`` training images as one tar shard, or unpacked into a folder; returns the source."""
    shard = subset_tar(sorted(root.glob("train-*.tar")), size, workdir / f"train-{size}.tar")
    if kind == "tar":
        return str(shard)
    folder = workdir / f"folder-{size}"
    marker = folder / ".complete"  # names starting with "." are not images to repinv
    if not marker.exists():
        with tarfile.open(shard) as archive:
            archive.extractall(folder, filter="data")
        marker.touch()
    return str(folder)


def measure(kind: str, size: int, workers: int, args: argparse.Namespace, root: Path,
            workdir: Path) -> dict[str, Any]:
    """One training process; its peak RSS and wall time."""
    source = data_set(kind, size, root, workdir)
    out = workdir / f"run-{kind}-{size}-{workers}"
    shutil.rmtree(out, ignore_errors=True)  # a --workdir used before holds the last run
    command = repinv_command("train", "--recipe", args.recipe, "--data", source, "--steps", str(args.steps),
                             "--workers", str(workers), "--device", "cpu", "--out", str(out), "--quiet")
    env = {"OMP_NUM_THREADS": str(args.threads)}
    child = run_child(command, env)
    child.check(display(command, env))
    return {"kind": kind, "images": size, "workers": workers, "peak_rss_mib": mib(child.peak_rss),
            "wall_s": round(child.seconds, 1), "command": display(command, env)}


def verdicts(rows: list[dict[str, Any]], floor: float) -> list[str]:
    """Per (kind, workers): growth of peak RSS from the smallest to the largest data set, against the target."""
    lines = []
    for kind, workers in dict.fromkeys((r["kind"], r["workers"]) for r in rows):
        group = sorted((r for r in rows if r["kind"] == kind and r["workers"] == workers), key=lambda r: r["images"])
        if len(group) < 2:
            continue
        small, large = group[0], group[-1]
        growth = large["peak_rss_mib"] / small["peak_rss_mib"] - 1.0
        above = large["peak_rss_mib"] - small["peak_rss_mib"]
        for row in group:
            row["growth_from_smallest"] = row["peak_rss_mib"] / small["peak_rss_mib"] - 1.0
        met = "met" if abs(growth) <= TARGET else "MISSED"
        lines.append(f"{kind}, {workers} workers: {large['images']:,} images peak at {large['peak_rss_mib']:,} MiB vs "
                     f"{small['peak_rss_mib']:,} MiB for {small['images']:,} ({growth:+.1%}, {above:+,.1f} MiB; "
                     f"{small['peak_rss_mib'] - floor:,.1f} MiB above the import floor): target within {TARGET:.0%} "
                     f"{met}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every (kind, size, workers), print the table and verdicts, write the JSON."""
    cores = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000], help="data set sizes (images)")
    parser.add_argument("--kinds", nargs="+", choices=["tar", "folder"], default=["tar", "folder"],
                        help="tar: one tar shard; folder: a folder of JPEG files")
    parser.add_argument("--workers", type=int, nargs="+", default=[0], help="loader worker counts to measure")
    parser.add_argument("--steps", type=int, default=200, help="training steps per run")
    parser.add_argument("--recipe", default="hog-64", help="training recipe")
    parser.add_argument("--threads", type=int, default=cores, help=f"torch threads (default: usable cores, {cores})")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the shards and folders go (default: a temporary folder, removed; 50k images "
                             "take about 140 MB as a tar, as much again as a folder)")
    parser.add_argument("--json", type=Path, default=None, help="output file (default bench/results/memory.json)")
    args = parser.parse_args(argv)
    root = shards()
    if root is None:
        parser.error("the shared Tiny ImageNet shards are needed (set REPINV_SHARED_DATA to the folder holding "
                     "tiny-imagenet-64/)")
    if min(args.sizes) < 1 or args.steps < 1 or min(args.workers) < 0:
        parser.error("sizes and steps must be at least 1, workers at least 0")

    header = start("Peak resident memory of training against the data set's size (lower is better)")
    floor_command = [sys.executable, "-c", _FLOOR]
    floor = run_child(floor_command)
    floor.check("the import floor")
    console.print(f"images: the first N images of {root}/train-*.tar; recipe {args.recipe}, {args.steps} steps, "
                  f"{args.threads} torch threads")
    rows = []
    with tempfile.TemporaryDirectory(prefix="repinv-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        total = len(args.kinds) * len(args.sizes) * len(args.workers)
        with progress_bar("training runs", total=total) as advance:
            for kind in args.kinds:
                for workers in args.workers:
                    for size in sorted(args.sizes):
                        rows.append(measure(kind, size, workers, args, root, workdir))
                        advance(1)
    lines = verdicts(rows, mib(floor.peak_rss))
    for row in rows:
        row["above_floor_mib"] = round(row["peak_rss_mib"] - mib(floor.peak_rss), 1)
    print_table("Peak resident memory of `repinv train` (MiB)",
                ["data", "images", "workers", "peak RSS", "above import floor", "vs smallest", "wall (s)"],
                [[r["kind"], f"{r['images']:,}", r["workers"], f"{r['peak_rss_mib']:,}", f"{r['above_floor_mib']:,}",
                  f"{r.get('growth_from_smallest', 0.0):+.1%}", r["wall_s"]] for r in rows],
                [f"import floor (python -c \"{_FLOOR}\"): {mib(floor.peak_rss):,} MiB",
                 "with workers: the largest process's peak, not the sum",
                 *[f"{r['kind']} {r['images']:,}: {r['command']}" for r in rows]])
    for line in lines:
        console.print(line, style="green" if line.endswith("met") else "red", highlight=False)
    write_results(args.json, "memory.json", {**header, "recipe": args.recipe, "steps": args.steps,
                                            "threads": args.threads, "floor_mib": mib(floor.peak_rss),
                                            "floor_command": display(floor_command), "results": rows,
                                            "verdicts": lines})
    return 0


if __name__ == "__main__":
    sys.exit(main())
