"""Thread policy for small machines: hog-64 training images/s for pairs of (torch threads, loader workers).

    python bench/threads.py                       # on 2 cores: (2,0) (1,1) (2,1) (2,2), 2 rounds: ~3 minutes
    python bench/threads.py --pairs 2,0 1,1 --rounds 3 --steps 600

Each pair is one ``repinv train --recipe hog-64`` process with ``OMP_NUM_THREADS`` torch threads in the training
process and ``--workers`` loader processes (each on one thread, torch's default in workers); images/s is read from
``metrics.jsonl`` after warm-up. The pairs run in rounds, interleaved, and the median round counts, so a change in
machine load hits every pair alike. With ``W = 0`` the training process decodes the JPEGs itself between steps;
with ``W > 0`` decoding overlaps the step but competes with its threads for the same cores. A third field
``passive`` runs the pair with ``OMP_WAIT_POLICY=PASSIVE``: OpenMP threads then sleep at once at the end of each
parallel region instead of spinning; on a machine whose cores are shared with other busy processes, spinning
threads of several processes were measured to slow each other down by one to two orders of magnitude.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import print_table, start, train_throughput, training_images, write_results

from repinv.progress import console, progress_bar

#: (torch threads, loader workers, OMP_WAIT_POLICY or None).
Setting = tuple[int, int, str | None]


def default_pairs(cores: int) -> list[Setting]:
    """All cores on torch with no workers; one worker with the rest on torch; all cores plus one or two workers;
    and the first again with passive OpenMP threads."""
    return list(dict.fromkeys([(cores, 0, None), (max(1, cores - 1), 1, None), (cores, 1, None), (cores, 2, None),
                               (cores, 0, "PASSIVE")]))


def pair(text: str) -> Setting:
    """``"T,W"`` or ``"T,W,passive"`` → ``(T, W, None | "PASSIVE")``, for argparse."""
    parts = text.split(",")
    try:
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].lower() != "passive"):
            raise ValueError
        threads, workers = int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected THREADS,WORKERS[,passive] such as 2,0 or 2,0,passive; "
                                         f"got {text!r}") from None
    if threads < 1 or workers < 0:
        raise argparse.ArgumentTypeError(f"threads must be at least 1 and workers at least 0; got {text!r}")
    return threads, workers, "PASSIVE" if len(parts) == 3 else None


def _name(setting: Setting) -> str:
    threads, workers, policy = setting
    return f"{threads},{workers}" + (",passive" if policy else "")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every pair ``--rounds`` times, print the table and the best pair, write the JSON."""
    cores = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=pair, nargs="+", default=default_pairs(cores),
                        metavar="THREADS,WORKERS[,passive]",
                        help="(torch threads, loader workers) pairs, optionally with OMP_WAIT_POLICY=PASSIVE "
                             f"(default for these {cores} cores: {' '.join(map(_name, default_pairs(cores)))})")
    parser.add_argument("--recipe", default="hog-64", help="training recipe")
    parser.add_argument("--steps", type=int, default=300, help="measured steps per run (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=50, help="steps before measuring (whole logging windows of 50)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per pair, interleaved (median reported)")
    parser.add_argument("--images", type=int, default=4096, help="training images (a subset of the shared shards)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the image subset and runs go (default: a temporary folder, removed)")
    parser.add_argument("--json", type=Path, default=None, help="output file (default bench/results/threads.json)")
    args = parser.parse_args(argv)
    if min(args.steps, args.rounds, args.images) < 1:
        parser.error("steps, rounds and images must be at least 1")

    header = start(f"Thread policy: {args.recipe} training images/s per (torch threads, loader workers)")
    runs: dict[Setting, list[dict[str, Any]]] = {p: [] for p in args.pairs}
    with tempfile.TemporaryDirectory(prefix="repinv-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        source, described = training_images(args.images, workdir)
        console.print(f"images: {described}")
        with progress_bar("training runs", total=args.rounds * len(args.pairs)) as advance:
            for round_ in range(args.rounds):
                for setting in args.pairs:
                    threads, workers, policy = setting
                    runs[setting].append(train_throughput(
                        args.recipe, workdir / f"run-{_name(setting)}-{round_}", steps=args.steps,
                        warmup=args.warmup, threads=threads, data=source, workers=workers, wait_policy=policy))
                    advance(1)
    rows = [{"threads": t, "workers": w, "omp_wait_policy": p or "default",
             "images_per_s": statistics.median(r["images_per_s"] for r in results),
             "rounds": [r["images_per_s"] for r in results], "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
             "command": results[0]["command"]} for (t, w, p), results in runs.items()]
    best = max(rows, key=lambda r: r["images_per_s"])
    for row in rows:
        row["relative_to_best"] = row["images_per_s"] / best["images_per_s"]
    print_table(f"{args.recipe} training images/s (median of {args.rounds} rounds)",
                ["torch threads", "workers", "OpenMP wait", "img/s", "rounds", "vs best", "peak RSS (MiB)"],
                [[r["threads"], r["workers"], r["omp_wait_policy"], f"{r['images_per_s']:,.0f}",
                  " / ".join(f"{x:,.0f}" for x in r["rounds"]), f"{r['relative_to_best']:.2f}", r["peak_rss_mib"]]
                 for r in rows],
                [f"{args.steps} steps measured after {args.warmup} of warm-up per run", *[r["command"] for r in rows]])
    verdict = (f"best on these {cores} cores: {best['threads']} torch threads, {best['workers']} workers, OpenMP wait "
               f"policy {best['omp_wait_policy']} ({best['images_per_s']:,.0f} img/s)")
    console.print(verdict, style="bold", highlight=False)
    write_results(args.json, "threads.json", {**header, "images": described, "recipe": args.recipe,
                                             "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
                                             "results": rows, "best": verdict})
    return 0


if __name__ == "__main__":
    sys.exit(main())
