"""Training data loading in the training process: a batch decoded together against item by item.

    python bench/loading.py                      # 64x64 crops, batch 16, 5 rounds of 200 batches: ~10 seconds
    python bench/loading.py --batch 64 --rounds 7

The training loader as ``repinv train`` builds it with ``workers = 0`` (the 2-core policy): the endless, seeded
position stream over the Tiny ImageNet training shards (scikit-image's photos without them), random crops and
flips. "Together" is the loader as shipped, which fetches a batch through ``ImageDataset.__getitems__`` (small
JPEGs cropped as 8-bit pixels, converted to float once per batch); "item by item" is the same loader with that
switched off. Both give identical batches (checked first); the two alternate in rounds and the median counts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from common import print_table, shards, start, write_results
from torch.utils.data import DataLoader

from repinv.data.sources import ImageDataset
from repinv.data.stream import PositionSampler, TrainingSamples


class ItemByItem(TrainingSamples):
    """The training samples without the batched fetch: the data loader then asks for one item at a time."""

    __getitems__ = None  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16, help="images per batch (hog-64's 16 by default)")
    parser.add_argument("--size", type=int, default=64, help="crop side")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (the median counts)")
    parser.add_argument("--batches", type=int, default=200, help="batches per round")
    parser.add_argument("--json", type=Path, help="output file (default bench/results/loading.json)")
    args = parser.parse_args(argv)
    header = start(f"Training data loading, batch {args.batch}, {args.size}x{args.size} crops: together against "
                   "item by item")
    root = shards()
    source = str(root / "train-*.tar") if root else "builtin"
    dataset = ImageDataset(source, args.size, train=True, seed=0)
    loaders = {name: iter(DataLoader(kind(dataset, None), batch_size=args.batch, num_workers=0,
                                     sampler=PositionSampler(len(dataset), seed=0)))
               for name, kind in (("together", TrainingSamples), ("item by item", ItemByItem))}
    for _ in range(20):
        assert torch.equal(*(next(loader) for loader in loaders.values())), "the two loaders differ"
    times: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(args.rounds):
        for name, loader in loaders.items():
            begin = time.perf_counter()
            for _ in range(args.batches):
                next(loader)
            times[name].append((time.perf_counter() - begin) / args.batches)
    median = {name: statistics.median(values) for name, values in times.items()}
    rows = [[name, " ".join(f"{t * 1e3:.2f}" for t in times[name]), f"{median[name] * 1e3:.2f}"] for name in times]
    print_table(f"ms per batch of {args.batch} from {dataset.describe()}", ["fetch", "rounds", "median"], rows,
                [f"together takes {1 - median['together'] / median['item by item']:.0%} less time; "
                 "batches identical (checked on 20)"])
    write_results(args.json, "loading.json", {**header, "source": source, "batch": args.batch, "size": args.size,
                                              "seconds_per_batch": times, "median": median})


if __name__ == "__main__":
    main(sys.argv[1:])
