"""Inverting a large photo at its own size: peak memory and time, in tiles against one piece.

    python bench/any_size.py                              # HOG, the paper-width conv decoder, a 4000x3000 photo
    python bench/any_size.py --rep lbp --size 2000 1500 --tiles 256 512 1024

Each way runs in a fresh child process (``--child``), so its peak resident memory is its own: the representation
and a decoder for 64x64 training crops (random weights, seeded: memory and time do not depend on the weights), and
scikit-image's astronaut enlarged to the photo size. ``one piece`` inverts the whole photo at once; ``tile N``
goes through tiles of about N pixels (``DecoderInverter.reconstruct(tile=N)``). The children also compare their
reconstruction with the one-piece result written by the first child (largest difference, in 1/255).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import mib, print_table, run_child, start, write_results

from repinv import build_decoder, create_representation, load_image
from repinv.data.indexing import builtin_files
from repinv.files import load_tensors, save_tensors
from repinv.inversion.decoder import DecoderInverter

ONE_PIECE = 10**9


def child(rep: str, size: tuple[int, int], tile: int, reference: Path) -> None:
    """Invert the photo once (after building everything), print the seconds and the difference from the reference."""
    torch.manual_seed(0)
    representation = create_representation(rep)
    decoder = build_decoder(representation.spec((64, 64)), 64).to(memory_format=torch.channels_last)
    inverter = DecoderInverter(representation, decoder, (64, 64)).eval()
    astronaut = (builtin_files("builtin") or [])[0]
    photo = F.interpolate(load_image(astronaut)[None], size=(size[1], size[0]), mode="bilinear", antialias=False)
    began = time.perf_counter()
    result = inverter.reconstruct(photo, tile=tile).clamp(0, 1)
    seconds = time.perf_counter() - began
    if tile == ONE_PIECE:
        save_tensors(reference, {"result": result})
        difference = 0.0
    else:
        difference = float((result - load_tensors(reference)["result"]).abs().max() * 255)
    print(f"RESULT {seconds:.3f} {difference:.6f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rep", default="hog", help="a representation whose map follows the image size")
    parser.add_argument("--size", nargs=2, type=int, default=[4000, 3000], metavar=("W", "H"), help="photo size")
    parser.add_argument("--tiles", nargs="+", type=int, default=[512, 1024], help="tile sides to measure")
    parser.add_argument("--json", type=Path, help="output file (default bench/results/any_size.json)")
    parser.add_argument("--child", nargs=2, metavar=("TILE", "REFERENCE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = (args.size[0], args.size[1])
    if args.child:
        child(args.rep, size, int(args.child[0]), Path(args.child[1]))
        return
    header = start(f"Inverting a {size[0]}x{size[1]} photo with {args.rep}: tiles against one piece")
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        reference = Path(scratch) / "one-piece.safetensors"
        for tile in [ONE_PIECE, *args.tiles]:
            name = "one piece" if tile == ONE_PIECE else f"tile {tile}"
            run = run_child([sys.executable, __file__, "--rep", args.rep, "--size", *map(str, size),
                             "--child", str(tile), str(reference)])
            run.check(name)
            seconds, difference = map(float, run.output.rsplit("RESULT ", 1)[1].split())
            results[name] = {"seconds": seconds, "peak_rss_mib": mib(run.peak_rss), "max_difference_255": difference}
            rows.append([name, f"{seconds:.1f}", f"{mib(run.peak_rss):,.0f}", f"{difference:.4f}"])
    print_table(f"{args.rep} at {size[0]}x{size[1]}, the conv decoder at width 1 (random weights)",
                ["way", "seconds", "peak memory MiB", "max |tiles − one piece| (1/255)"], rows)
    write_results(args.json, "any_size.json", {**header, "rep": args.rep, "size": list(size), "results": results})


if __name__ == "__main__":
    main()
