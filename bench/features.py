"""Feature extraction speed: repinv's batched HOG, LBP and sparse SIFT against VLFeat, scikit-image and OpenCV.

    python bench/features.py                      # 64 and 256 px, CPU (and CUDA when present), ~2 minutes
    python bench/features.py --sizes 64 --repeat 3 --threads 1 2 --json /tmp/features.json

All libraries get the same real photos in the same run (Tiny ImageNet validation images when the shared shards are
present, else random crops of scikit-image's photos), one pass over all of them per timing, with the libraries
interleaved round by round so that a change in machine load hits them alike; each figure is the median pass.
What each timing includes is printed beside it:

* repinv: RGB float images in [0, 1] in, features out, in batches (``--batch``) on ``--threads`` torch threads,
  grey conversion (BT.601) included; on CUDA the images are on the device already (no host transfer) and the
  clock waits for the device.
* VLFeat (Debian's libvlfeat1 through ctypes, ``tests/vlfeat.py``): single-threaded C, one image per call, on
  float32 grey images converted beforehand (not timed), with the wrapper's per-call object creation and ctypes
  overhead (microseconds) included, as MATLAB's ``vl_hog`` pays per call.
* scikit-image and OpenCV: one image per call on pre-converted grey images (float32 for ``skimage.feature.hog``,
  uint8 for the rest), OpenCV on one thread (``cv2.setNumThreads(1)``), as repinv's SIFT runs in loader workers.

Equivalence: HOG with 8-pixel cells and 9 orientations everywhere, but only VLFeat and repinv compute UoCTTI
(31 dims per cell); scikit-image (3x3-cell blocks by default, 2x2 here, L2-Hys) and OpenCV's ``HOGDescriptor``
(window = the whole image, 16-pixel blocks with 8-pixel stride, Gaussian block weighting, L2-Hys) compute
Dalal-Triggs HOG, a different amount of work. LBP with 16-pixel cells and VLFeat's 58 uniform patterns;
scikit-image's ``local_binary_pattern(P=8, R=1, 'nri_uniform')`` gives per-pixel codes only, so its timing adds a
per-cell histogram (nearest cell, where VLFeat and repinv interpolate bilinearly) and VLFeat's square-root
normalisation in NumPy. Sparse SIFT is OpenCV's ``detectAndCompute`` plus repinv's grid arrangement; it is compared
with OpenCV's SIFT alone (the VLFeat wrapper has no SIFT).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from skimage import data as skdata
from skimage.feature import hog as skimage_hog
from skimage.feature import local_binary_pattern

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the VLFeat ctypes wrapper of the tests

import vlfeat
from common import print_table, shards, start, write_results

import repinv
from repinv.data.sources import ImageDataset
from repinv.progress import console, progress_bar

#: What each library's timing includes, shown in the table and stored in the JSON.
TIMED = {
    "repinv": "RGB batch in, gray conversion included",
    "VLFeat": "1 image per call, 1 thread, gray given",
    "scikit-image": "1 image per call, gray given",
    "OpenCV": "1 image per call, 1 thread, uint8 gray given",
}
#: The issue's target: batched HOG and LBP at least as fast as VLFeat at every size.
TARGET = 1.0


@dataclass
class Method:
    """One implementation of one feature, timed over all the images of one size."""

    feature: str  # "HOG", "LBP", "SIFT"
    library: str  # key of TIMED
    label: str  # e.g. "repinv (2 threads)"
    run: Callable[[], None]  # one pass over all the images
    device: str = "cpu"
    threads: int = 1
    seconds: list[float] = field(default_factory=list)

    def rate(self, images: int) -> float:
        """Images per second of the median pass."""
        return images / statistics.median(self.seconds)


@dataclass
class Images:
    """One size's photos in every form a library takes."""

    rgb: torch.Tensor  # (N, 3, S, S) float32 in [0, 1]
    gray: np.ndarray  # (N, S, S) float32 BT.601 luma
    gray_u8: np.ndarray  # (N, S, S) uint8, round(255 * gray)


def photos(size: int, count: int, source: str) -> torch.Tensor:
    """``count`` real photos of ``size`` x ``size``: Tiny ImageNet validation images (resized from 64 px when
    ``size`` differs), or seeded random crops of scikit-image's colour photos at their native resolution."""
    if source == "tiny":
        root = shards()
        assert root is not None
        dataset = ImageDataset(str(root / "val-000.tar"), size, train=False)
        return torch.stack([dataset[i] for i in range(count)])
    rng = np.random.default_rng(0)
    sources = [f() for f in (skdata.astronaut, skdata.coffee, skdata.chelsea, skdata.rocket, skdata.motorcycle_left)]
    crops = []
    for i in range(count):
        photo = sources[i % len(sources)]
        y, x = (int(rng.integers(0, photo.shape[a] - size + 1)) for a in (0, 1))
        crops.append(torch.from_numpy(photo[y:y + size, x:x + size].copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(crops)


def prepare(rgb: torch.Tensor) -> Images:
    """The grey versions (not timed: every library but repinv is given grey images)."""
    gray = repinv.rgb_to_gray(rgb)[:, 0].numpy()
    gray_u8 = np.clip(np.rint(gray * np.float32(255)), 0, 255).astype(np.uint8)
    return Images(rgb, np.ascontiguousarray(gray), np.ascontiguousarray(gray_u8))


def _batched(name: str, images: torch.Tensor, batch: int, threads: int, device: str) -> Callable[[], None]:
    representation = repinv.create_representation(name).to(device)
    batches = images.to(device).split(batch)
    cuda = device.startswith("cuda")

    def run() -> None:
        torch.set_num_threads(threads)
        with torch.no_grad():  # as in training, where the representation is frozen
            for part in batches:
                representation(part)
        if cuda:
            torch.cuda.synchronize()

    return run


def _per_image(function: Callable[[np.ndarray], Any], images: np.ndarray) -> Callable[[], None]:
    def run() -> None:
        for image in images:
            function(image)

    return run


def _skimage_lbp(cell: int) -> Callable[[np.ndarray], np.ndarray]:
    """Codes by scikit-image, then 58-bin cell histograms with VLFeat's normalisation (nearest cell, NumPy)."""

    def compute(image: np.ndarray) -> np.ndarray:
        codes = local_binary_pattern(image, 8, 1, method="nri_uniform").astype(np.int64)
        codes = np.minimum(codes, 57)  # 59 codes: VLFeat merges the two constant patterns into one bin
        rows, columns = image.shape[0] // cell, image.shape[1] // cell
        cells = codes[:rows * cell, :columns * cell].reshape(rows, cell, columns, cell).transpose(0, 2, 1, 3)
        index = np.arange(rows * columns)[:, None] * 58 + cells.reshape(rows * columns, -1)
        histogram = np.bincount(index.ravel(), minlength=rows * columns * 58).reshape(rows * columns, 58)
        return np.sqrt(histogram / np.maximum(histogram.sum(1, keepdims=True), 1))

    return compute


def methods(images: Images, size: int, batch: int, threads: list[int], cuda_batch: int | None) -> list[Method]:
    """Every implementation to time at one size."""
    found: list[Method] = []
    for feature in ("hog", "lbp"):
        for count in threads:
            found.append(Method(feature.upper(), "repinv", f"repinv ({count} thread{'s' * (count > 1)})",
                                _batched(feature, images.rgb, batch, count, "cpu"), threads=count))
        if cuda_batch:
            found.append(Method(feature.upper(), "repinv", f"repinv (CUDA, batch {cuda_batch})",
                                _batched(feature, images.rgb, cuda_batch, 1, "cuda"), device="cuda"))
    # Sparse SIFT is serial OpenCV code per image (repinv runs it in loader workers): one thread, CPU only.
    found.append(Method("SIFT", "repinv", "repinv sparse SIFT (1 thread)",
                        _batched("sift", images.rgb, batch, 1, "cpu")))
    if vlfeat.available():
        found.append(Method("HOG", "VLFeat", "VLFeat UoCTTI", _per_image(vlfeat.hog, images.gray)))
        found.append(Method("LBP", "VLFeat", "VLFeat uniform", _per_image(vlfeat.lbp, images.gray)))
    found.append(Method("HOG", "scikit-image", "skimage.feature.hog (Dalal-Triggs)", _per_image(
        lambda g: skimage_hog(g, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2)), images.gray)))
    found.append(Method("LBP", "scikit-image", "skimage local_binary_pattern + histograms",
                        _per_image(_skimage_lbp(16), images.gray_u8)))
    descriptor = cv2.HOGDescriptor((size, size), (16, 16), (8, 8), (8, 8), 9)
    found.append(Method("HOG", "OpenCV", "cv2.HOGDescriptor (Dalal-Triggs)",
                        _per_image(descriptor.compute, images.gray_u8)))
    detector = cv2.SIFT_create()
    found.append(Method("SIFT", "OpenCV", "cv2.SIFT detectAndCompute",
                        _per_image(lambda g: detector.detectAndCompute(g, None), images.gray_u8)))
    return found


def agreement(images: Images) -> dict[str, float]:
    """Largest absolute difference between repinv's and VLFeat's HOG and LBP on the first image (a sanity check
    that the two compute the same thing)."""
    first = images.rgb[:1]
    with torch.no_grad():
        ours = {name: repinv.create_representation(name)(first)[0].numpy() for name in ("hog", "lbp")}
    return {"hog": float(np.abs(ours["hog"] - vlfeat.hog(images.gray[0])).max()),
            "lbp": float(np.abs(ours["lbp"] - vlfeat.lbp(images.gray[0])).max())}


def measure(size: int, count: int, args: argparse.Namespace,
            cuda_batch: int | None) -> tuple[list[dict[str, Any]], dict[str, float] | None]:
    """Time every method at one size; return one JSON-able row per method, and repinv's agreement with VLFeat."""
    images = prepare(photos(size, count, args.source))
    found = methods(images, size, args.batch, args.threads, cuda_batch)
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for method in found:  # warm-up: geometry caches, allocator, OpenCV's and torch's first-call costs
            method.run()
        with progress_bar(f"{size} px", total=args.repeat * len(found)) as advance:
            for round_ in range(args.repeat):
                # Rotate the order each round, so no method always runs right after the same other one.
                shift = round_ % len(found)
                for method in found[shift:] + found[:shift]:
                    began = time.perf_counter()
                    method.run()
                    method.seconds.append(time.perf_counter() - began)
                    advance(1)
    finally:
        cv2.setNumThreads(previous)
    references = {m.feature: m.rate(count) for m in found
                  if (m.library, m.feature) in {("VLFeat", "HOG"), ("VLFeat", "LBP"), ("OpenCV", "SIFT")}}
    rows = []
    for method in found:
        rate = method.rate(count)
        reference = references.get(method.feature)
        rows.append({"feature": method.feature, "implementation": method.label, "library": method.library,
                     "device": method.device, "threads": method.threads, "size": size, "images": count,
                     "timed": TIMED[method.library] if method.device == "cpu" else
                     "RGB batch on the GPU already, gray conversion included",
                     "seconds": method.seconds, "images_per_s": rate,
                     "reference": ("OpenCV SIFT" if method.feature == "SIFT" else f"VLFeat {method.feature}"),
                     "ratio": rate / reference if reference else None})
    return rows, agreement(images) if vlfeat.available() else None


def verdicts(rows: list[dict[str, Any]], threads: int) -> list[str]:
    """One line per (feature, size): repinv on ``threads`` CPU threads against the target ratio to VLFeat."""
    lines = []
    for row in rows:
        if row["library"] == "repinv" and row["device"] == "cpu" and row["threads"] == threads \
                and row["feature"] in ("HOG", "LBP") and row["ratio"] is not None:
            met = "met" if row["ratio"] >= TARGET else "MISSED"
            lines.append(f"{row['feature']} at {row['size']} px: repinv on {threads} threads is {row['ratio']:.2f}x "
                         f"VLFeat ({row['images_per_s']:,.0f} vs {row['images_per_s'] / row['ratio']:,.0f} img/s): "
                         f"target >= {TARGET:.1f}x {met}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, measure every size, print the table and the target verdicts, write the JSON."""
    cores = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="image sides in pixels")
    parser.add_argument("--images", type=int, default=512,
                        help="images per pass at 64 px; scaled by (64/size)^2 above it, at least 2 batches "
                             "(default 512: 128 at 256 px)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes per method (median reported)")
    parser.add_argument("--batch", type=int, default=64, help="repinv's batch size on the CPU")
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, cores}),
                        help=f"torch thread counts for repinv (default: 1 and the usable cores, {cores}; the target "
                             "is checked with the most threads)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="cpu: CPU only; cuda: also time repinv on the GPU (error without one); auto: cuda when "
                             "present")
    parser.add_argument("--cuda-batch", type=int, default=1024, help="repinv's batch size on the GPU")
    parser.add_argument("--source", choices=["auto", "tiny", "builtin"], default="auto",
                        help="tiny: Tiny ImageNet validation shard; builtin: crops of scikit-image's photos; "
                             "auto: tiny when the shared shards are present")
    parser.add_argument("--json", type=Path, default=None, help="output file (default bench/results/features.json)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if min(args.sizes) < 16 or args.repeat < 1 or args.batch < 1 or min(args.threads) < 1:
        parser.error("sizes must be at least 16 pixels; repeat, batch and threads at least 1")
    cuda_batch = args.cuda_batch if args.device != "cpu" and torch.cuda.is_available() else None
    if args.source == "auto":
        args.source = "tiny" if shards() is not None else "builtin"

    header = start("Feature extraction: images per second (higher is better)")
    origin = {"tiny": f"Tiny ImageNet validation images ({shards()}/val-000.tar; resized from 64 px for larger "
                      "sizes)", "builtin": "random crops of scikit-image's colour photos (shared shards absent)"}
    console.print(f"images: {origin[args.source]}")
    if not vlfeat.available():
        console.print(f"[yellow]VLFeat not found ({vlfeat.MISSING}): no VLFeat figures or ratios[/yellow]")

    rows: list[dict[str, Any]] = []
    agreements: dict[int, dict[str, float] | None] = {}
    for size in args.sizes:
        count = max(2 * args.batch, round(args.images * (64 / size) ** 2)) if size > 64 else args.images
        found, agreements[size] = measure(size, count, args, cuda_batch)
        rows += found

    notes = [f"{feature}: {text}" for feature, text in TIMED.items()]
    notes.append(f"ratio: to VLFeat for HOG and LBP, to OpenCV's SIFT for SIFT; median of {args.repeat} passes over "
                 "the same images for every library")
    for size, agree in agreements.items():
        if agree is not None:
            notes.append(f"{size} px: max |repinv - VLFeat| on the first image: HOG {agree['hog']:.1e}, "
                         f"LBP {agree['lbp']:.1e}")
    print_table("Feature extraction (images/s; what each timing includes: below the table)",
                ["feature", "implementation", "size", "images", "img/s", "ratio"],
                [[r["feature"], r["implementation"], r["size"], r["images"], f"{r['images_per_s']:,.0f}",
                  f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"] for r in rows], notes)
    lines = verdicts(rows, max(args.threads))
    for line in lines:
        console.print(line, style="green" if line.endswith("met") else "red", highlight=False)
    write_results(args.json, "features.json", {**header, "source": origin[args.source], "repeat": args.repeat,
                                              "batch": args.batch, "cuda_batch": cuda_batch, "results": rows,
                                              "max_abs_difference_to_vlfeat": agreements, "verdicts": lines})
    return 0


if __name__ == "__main__":
    sys.exit(main())
