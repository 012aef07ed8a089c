"""Decoding speed of a loaded decoder: channels-last (what :func:`repinv.load` gives) against the default layout.

    python bench/decode.py                       # hog-64, lbp-64, alexnet-conv2-64, alexnet-fc8-64; ~1 minute
    python bench/decode.py --recipes hog-64 --batch 16 --rounds 11

For each recipe it trains a decoder for one step on scikit-image's photos (the weights do not change the time;
AlexNet gets random weights), loads it with :func:`repinv.load`, and times ``decoder(features)`` for one batch of
features in both memory layouts of the same weights. The layouts alternate in rounds of ``--repeats`` calls and
the median round counts, so a change in machine load hits both alike. Features are computed once, outside the
timing: this is the decoder's own time, the part ``repinv compare`` reports as a decoder's seconds per image.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import print_table, random_weights, start, write_results

import repinv
from repinv.options import parse_options

LAYOUTS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}


def time_layouts(decoder: torch.nn.Module, features: torch.Tensor, rounds: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of ``decoder(features)`` in each layout of :data:`LAYOUTS`."""
    decoders = {name: copy.deepcopy(decoder).to(memory_format=layout) for name, layout in LAYOUTS.items()}
    times: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    with torch.no_grad():
        for model in decoders.values():
            model(features)  # warm-up
        for _ in range(rounds):
            for name, model in decoders.items():
                begin = time.perf_counter()
                for _ in range(repeats):
                    model(features)
                times[name].append((time.perf_counter() - begin) / repeats)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=["hog-64", "lbp-64", "alexnet-conv2-64", "alexnet-fc8-64"])
    parser.add_argument("--batch", type=int, default=64, help="feature vectors per call")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per layout (the median counts)")
    parser.add_argument("--repeats", type=int, default=5, help="calls per round")
    parser.add_argument("--json", type=Path, help="output file (default bench/results/decode.json)")
    args = parser.parse_args(argv)
    header = start(f"Decoding {args.batch} feature vectors: channels-last against the default layout")
    rows, results = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for recipe in args.recipes:
            config = repinv.make_config(recipe, data=["builtin"], steps=1, batch_size=2, workers=0, device="cpu",
                                        rep_options=parse_options(random_weights(recipe)))
            run = repinv.train(config, Path(workdir) / recipe, show_progress=False).run
            inverter = repinv.load(run, "cpu")
            generator = torch.Generator().manual_seed(0)
            images = torch.rand(args.batch, 3, *inverter.image_size, generator=generator)
            seconds = time_layouts(inverter.decoder, inverter.features(images), args.rounds, args.repeats)
            speedup = seconds["contiguous"] / seconds["channels-last"]
            rows.append([recipe, str(inverter.spec), f"{seconds['contiguous'] * 1e3:.1f}",
                         f"{seconds['channels-last'] * 1e3:.1f}", f"{speedup:.2f}x"])
            results.append({"recipe": recipe, "features": list(inverter.spec.shape), "seconds": seconds,
                            "speedup": speedup})
    print_table(f"decoder(features) at batch {args.batch}, ms per call (median of {args.rounds} rounds)",
                ["recipe", "features", "contiguous", "channels-last", "speed-up"], rows)
    write_results(args.json, "decode.json", {**header, "batch": args.batch, "rounds": args.rounds,
                                             "repeats": args.repeats, "results": results})


if __name__ == "__main__":
    main(sys.argv[1:])
