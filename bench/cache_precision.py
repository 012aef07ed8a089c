"""Feature caches in float16 against float32: disk and memory, and the error of a decoder trained from each.

    python bench/cache_precision.py                  # EfficientNet-Lite0 blocks.2 (trained weights); ~10 minutes
    python bench/cache_precision.py --layer blocks.1 --images 1000 --steps 200

Both caches hold the same centre crops of the first ``--images`` training images of the shared Tiny ImageNet shards;
a decoder is trained from each with the same seed, steps and settings, and both are scored on the first 500
validation images by ``repinv evaluate`` (the representation computes the test features in float32 either way).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import print_table, shards, start, subset_tar, write_results

import repinv

TRAINED = Path(__file__).resolve().parents[2] / "shared" / "models" / "tf_efficientnet_lite0.safetensors"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", default="blocks.2")
    parser.add_argument("--images", type=int, default=2000, help="training images cached")
    parser.add_argument("--steps", type=int, default=400, help="decoder steps from each cache")
    parser.add_argument("--json", type=Path, help="output file (default bench/results/cache_precision.json)")
    args = parser.parse_args(argv)
    root = shards()
    if root is None or not TRAINED.is_file():
        sys.exit(f"needs the shared Tiny ImageNet shards and {TRAINED}")
    header = start(f"float16 against float32 feature caches: timm:tf_efficientnet_lite0:{args.layer}")
    rep, options = f"timm:tf_efficientnet_lite0:{args.layer}", {"weights": str(TRAINED)}
    rows, results = [], []
    with tempfile.TemporaryDirectory() as workdir:
        data = str(subset_tar([root / "train-000.tar"], args.images, Path(workdir) / "train.tar"))
        for dtype in ("float32", "float16"):
            cache = repinv.cache_features(rep, data, Path(workdir) / dtype, rep_options=options, image_size=64,
                                          workers=0, dtype=dtype, show_progress=False)
            disk = sum(p.stat().st_size for p in (Path(workdir) / dtype).glob("shard-*.safetensors"))
            memory = sum(t.nbytes for shard in cache._shards for t in shard.values())
            config = repinv.make_config(features=str(Path(workdir) / dtype), width=0.25, steps=args.steps,
                                        batch_size=16, workers=0, seed=0, schedule="cosine")
            run = repinv.train(config, Path(workdir) / f"run-{dtype}", show_progress=False).run
            scores = repinv.evaluate(repinv.load_decoder(run, "cpu"), str(root / "val-000.tar"), limit=500)
            error = scores["decoder"]["normalized_error"]
            rows.append([dtype, f"{disk / 2**20:.1f}", f"{memory / 2**20:.1f}", f"{error:.4f}"])
            results.append({"dtype": dtype, "disk_bytes": disk, "memory_bytes": memory, "normalized_error": error})
    print_table(f"{args.images} cached images, a decoder of {args.steps} steps from each, 500 validation images",
                ["storage", "disk MiB", "in memory MiB", "normalized error"], rows)
    write_results(args.json, "cache_precision.json", {**header, **vars(args), "json": None, "results": results})


if __name__ == "__main__":
    main(sys.argv[1:])
