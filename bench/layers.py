"""Caching K layers of one network: one forward pass for all of them against one pass per layer.

    python bench/layers.py                      # EfficientNet-Lite0 blocks.1 .. blocks.5 (trained, when
                                                # ../shared/models has it) on 200 Tiny ImageNet images
    python bench/layers.py --images 500 --layers blocks.3 blocks.5 --workers 2

Both ways write real caches (``cache_features``, 64x64 centre crops, float32) into a temporary folder: all layers
together (``cache_features([rep, ...])``: one pass over the images, each batch through the network once, every
layer taken from that pass) and each layer alone. Their features must be equal, and are checked. The rounds
alternate between the two ways (the median round counts), each round into fresh folders.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import print_table, shards, start, subset_tar, write_results

from repinv.data.cache import FeatureCache, cache_features
from repinv.data.sources import default_data_root

TRAINED = default_data_root().parent / "models" / "tf_efficientnet_lite0.safetensors"


def _equal(first: FeatureCache, second: FeatureCache) -> bool:
    return len(first) == len(second) and all(torch.equal(first[i][1], second[i][1]) for i in range(len(first)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tf_efficientnet_lite0", help="timm model")
    parser.add_argument("--layers", nargs="+", default=[f"blocks.{i}" for i in range(1, 6)])
    parser.add_argument("--weights", help=f"weights option (default: {TRAINED} when present, else none)")
    parser.add_argument("--images", type=int, default=200, help="Tiny ImageNet training images cached")
    parser.add_argument("--batch", type=int, default=64, help="images per batch of feature computation")
    parser.add_argument("--workers", type=int, default=0, help="data-loader workers")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds (the median counts)")
    parser.add_argument("--json", type=Path, help="output file (default bench/results/layers.json)")
    args = parser.parse_args(argv)
    weights = args.weights or (str(TRAINED) if TRAINED.is_file() else "none")
    reps = [f"timm:{args.model}:{layer}" for layer in args.layers]
    header = start(f"Caching {len(reps)} layers of {args.model} on {args.images} images: one pass against one per "
                   "layer")
    root = shards()
    if root is None:
        raise SystemExit("the shared Tiny ImageNet shards are absent (set REPINV_SHARED_DATA)")
    settings = {"rep_options": {"weights": weights}, "image_size": 64, "batch_size": args.batch,
                "workers": args.workers, "show_progress": False}
    times: dict[str, list[float]] = {"one pass": [], "one pass per layer": []}
    equal = True
    with tempfile.TemporaryDirectory() as scratch:
        data = str(subset_tar([root / "train-000.tar"], args.images, Path(scratch) / "images.tar"))
        cache_features(reps[0], data, Path(scratch) / "warm-up", **settings)  # reads the images once: disk cache
        for round_ in range(args.rounds):
            begin = time.perf_counter()
            together = cache_features(reps, data, Path(scratch) / f"together-{round_}", **settings)
            times["one pass"].append(time.perf_counter() - begin)
            begin = time.perf_counter()
            alone = [cache_features(rep, data, Path(scratch) / f"alone-{round_}-{i}", **settings)
                     for i, rep in enumerate(reps)]
            times["one pass per layer"].append(time.perf_counter() - begin)
            equal = equal and all(_equal(a, b) for a, b in zip(together, alone))
    seconds = {way: statistics.median(values) for way, values in times.items()}
    speedup = seconds["one pass per layer"] / seconds["one pass"]
    rows = [[way, f"{value:.2f}", f"{args.images / value:.1f}", f"{speedup:.2f}x" if way == "one pass" else ""]
            for way, value in seconds.items()]
    print_table(f"{len(reps)} caches of {args.images} images ({', '.join(args.layers)}; weights "
                f"{weights.rsplit('/', 1)[-1]}; batch {args.batch}, workers {args.workers}; median of {args.rounds})",
                ["way", "seconds", "images/s", "speed-up"], rows,
                notes=[f"features of the two ways equal: {equal}"])
    write_results(args.json, "layers.json", {**header, "model": args.model, "layers": args.layers, "weights": weights,
                                             "images": args.images, "batch": args.batch, "workers": args.workers,
                                             "rounds": args.rounds, "seconds": seconds, "speedup": speedup,
                                             "features_equal": equal})
    if not equal:
        raise SystemExit("the one-pass caches differ from the per-layer caches")


if __name__ == "__main__":
    main(sys.argv[1:])
