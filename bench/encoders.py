"""Network representations in the channels-last layout (what the AlexNet and timm plugins use) against the default.

    python bench/encoders.py                    # EfficientNet-Lite0 (trained, when ../shared/models has it),
                                                # ResNet-18 and AlexNet layers at batch 50; about 2 minutes
    python bench/encoders.py --reps alexnet:conv5 --batch 16

For each representation it times the whole ``representation(images)`` call (resize to 224, normalization, the
network up to the layer) on one batch of 64x64 images, with the network's weights in each memory layout, the
layouts alternating in rounds (the median round counts), and reports the largest difference of the features.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from common import print_table, start, write_results

import repinv
from repinv.data.sources import default_data_root

LAYOUTS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}
TRAINED = default_data_root().parent / "models" / "tf_efficientnet_lite0.safetensors"


def _weights(name: str) -> dict[str, str]:
    if name.startswith("timm:tf_efficientnet_lite0") and TRAINED.is_file():
        return {"weights": str(TRAINED)}
    return {"weights": "none"}


def time_layouts(representation: torch.nn.Module, images: torch.Tensor, rounds: int) -> tuple[dict[str, float], float]:
    """Median seconds per call in each layout, and the largest feature difference between the layouts."""
    copies = {}
    for name, layout in LAYOUTS.items():
        copies[name] = copy.deepcopy(representation)
        copies[name].model.to(memory_format=layout)
    times: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    with torch.no_grad():
        outputs = {name: rep(images) for name, rep in copies.items()}  # warm-up, and the features compared
        for _ in range(rounds):
            for name, rep in copies.items():
                begin = time.perf_counter()
                rep(images)
                times[name].append(time.perf_counter() - begin)
    difference = float((outputs["contiguous"] - outputs["channels-last"]).abs().max())
    return {name: statistics.median(values) for name, values in times.items()}, difference


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", nargs="+", default=["timm:tf_efficientnet_lite0:blocks.5",
                                                      "timm:tf_efficientnet_lite0:logits", "timm:resnet18:layer3",
                                                      "alexnet:conv5", "alexnet:fc8"])
    parser.add_argument("--batch", type=int, default=50, help="64x64 images per call")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per layout (the median counts)")
    parser.add_argument("--json", type=Path, help="output file (default bench/results/encoders.json)")
    args = parser.parse_args(argv)
    header = start(f"Network representations on {args.batch} images: channels-last against the default layout")
    rows, results = [], []
    images = torch.rand(args.batch, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for name in args.reps:
        representation = repinv.create_representation(name, **_weights(name)).load_weights()
        seconds, difference = time_layouts(representation, images, args.rounds)
        rates = {layout: args.batch / value for layout, value in seconds.items()}
        speedup = rates["channels-last"] / rates["contiguous"]
        rows.append([name, _weights(name)["weights"].rsplit("/", 1)[-1], f"{rates['contiguous']:.1f}",
                     f"{rates['channels-last']:.1f}", f"{speedup:.2f}x", f"{difference:.1e}"])
        results.append({"representation": name, "images_per_s": rates, "speedup": speedup,
                        "max_feature_difference": difference})
    print_table(f"representation(images), images/s at batch {args.batch} (median of {args.rounds} rounds)",
                ["representation", "weights", "contiguous", "channels-last", "speed-up", "max |Δ features|"], rows)
    write_results(args.json, "encoders.json", {**header, "batch": args.batch, "rounds": args.rounds,
                                               "results": results})


if __name__ == "__main__":
    main(sys.argv[1:])
