"""Quality per compute: two recipes (the paper's decoder against another) at equal steps and at equal time.

    python bench/decoders.py steps --pairs hog-64-conv:hog-64 --seeds 0 1 --steps 4000   # ~15 minutes
    python bench/decoders.py time --pairs hog-64-conv:hog-64 --rounds 2 --budget 600      # ~45 minutes
    python bench/decoders.py profile --recipes hog-64-conv hog-64                         # ~1 minute

``steps``: each recipe trained for exactly ``--steps`` steps (so the rate schedule follows steps and the machine's
speed drops out) with each seed, then scored on all of ``--val`` (10,000 Tiny ImageNet validation images). A
candidate wins only by more than the spread between seeds.

``time``: each recipe trained for ``--budget`` seconds (``--time-budget``: the rate anneals with the clock, and
``torch.compile``'s compilation, when a recipe asks for it, happens inside the budget, from an empty cache),
interleaved A, B, A, B so that the shared machine's drifting speed hits both alike; round ``r`` uses seed ``r``.
Steps reached and images/s are reported beside the scores.

``profile``: where one training step's time goes, per top-level layer of each recipe's decoder (forward and
backward timed layer by layer on the layer's own input), beside the features, the loss and the optimizer update,
and the whole step timed as the training loop takes it.

Runs live in ``--out`` (default ``runs/decoders``); a run whose evaluation is there is not repeated, so an
interrupted benchmark continues where it stopped. Results: ``bench/results/decoders-PART.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from common import (
    REPO,
    display,
    print_table,
    recipe_decoder,
    repinv_command,
    run_child,
    shards,
    start,
    write_results,
)

import repinv
from repinv.progress import console


def _run(recipe: str, out: Path, data: str, val: str, extra: list[str], limit: int | None) -> dict[str, Any]:
    """Train ``recipe`` into ``out`` (unless done) and score it on ``val`` (its first ``limit`` images, or all); the
    training and scoring figures."""
    evaluation = out / "evaluation.json"
    if not evaluation.is_file():
        if out.exists():
            raise SystemExit(f"{out} holds an unfinished run: delete it and run the benchmark again")
        train = repinv_command("train", "--recipe", recipe, "--data", data, "--out", str(out), "--quiet", *extra)
        # A cache of its own, so that every run that compiles pays the whole compilation, as on a fresh machine.
        with tempfile.TemporaryDirectory() as cache:
            run_child(train, {"TORCHINDUCTOR_CACHE_DIR": cache}).check(display(train))
        score = repinv_command("evaluate", "--checkpoint", str(out), "--data", val, "--workers", "0",
                               *(["--limit", str(limit)] if limit else []))
        run_child(score).check(display(score))
    scores = json.loads(evaluation.read_text())["decoder"]
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"images_per_s"' in line]
    config = json.loads((out / "config.json").read_text())
    steps, elapsed = log[-1]["step"], log[-1]["elapsed"]
    return {"recipe": recipe, "run": str(out), "steps": steps, "seconds": round(elapsed, 1),
            "images_per_s": round(steps * config["batch_size"] / elapsed),
            "normalized_error": scores["normalized_error"], "psnr": scores["psnr"], "ssim": scores["ssim"],
            "command": display(["repinv", "train", "--recipe", recipe, "--data", data, *extra])}


def _pairs(text: list[str]) -> list[tuple[str, str]]:
    pairs = [tuple(pair.split(":")) for pair in text]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit("--pairs takes BASELINE:CANDIDATE recipe names")
    return pairs  # type: ignore[return-value]


def equal_steps(args: argparse.Namespace, data: str, val: str) -> list[dict[str, Any]]:
    """Each recipe of each pair, every seed, exactly ``--steps`` steps."""
    rows = []
    for pair in _pairs(args.pairs):
        for recipe in pair:
            for seed in args.seeds:
                out = args.out / f"steps{args.steps}-{recipe}-seed{seed}"
                rows.append(_run(recipe, out, data, val, ["--steps", str(args.steps), "--seed", str(seed)], args.limit)
                            | {"seed": seed})
                console.print(f"{recipe} seed {seed}: {rows[-1]['normalized_error']:.4f}")
    return rows


def equal_time(args: argparse.Namespace, data: str, val: str) -> list[dict[str, Any]]:
    """Each pair A, B, A, B: ``--rounds`` runs of ``--budget`` seconds each, round ``r`` with seed ``r``."""
    rows = []
    for pair in _pairs(args.pairs):
        for seed in range(args.rounds):
            for recipe in pair:
                out = args.out / f"time{args.budget:g}-{recipe}-seed{seed}"
                rows.append(_run(recipe, out, data, val, ["--time-budget", f"{args.budget:g}", "--seed", str(seed)],
                                 args.limit)
                            | {"seed": seed})
                console.print(f"{recipe} seed {seed}: {rows[-1]['normalized_error']:.4f} after "
                              f"{rows[-1]['steps']:,} steps ({rows[-1]['images_per_s']} images/s)")
    return rows


def _median_ms(work: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        work()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def step_profile(recipe: str, repeats: int) -> dict[str, Any]:
    """Forward and backward time of each top-level layer of ``recipe``'s decoder, and of the rest of a step (eager,
    float32: where the arithmetic is, before compilation and bfloat16 change its speed)."""
    config = repinv.make_config(recipe)
    torch.manual_seed(0)
    representation = repinv.create_representation(config.rep, **config.rep_options).eval()
    size = (config.image_size, config.image_size)
    decoder = recipe_decoder(config, representation.spec(size))
    decoder.train()
    images = torch.rand(config.batch_size, 3, *size)
    features = representation(images)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=config.lr, fused=True)
    # A weighted layer and the parameter-free layers after it (its activation, in place) are timed as one unit.
    units: list[tuple[str, list[torch.nn.Module]]] = []
    for name, layer in decoder.layers.named_children():
        if units and not any(True for _ in layer.parameters()):
            units[-1][1].append(layer)
        else:
            units.append((name, [layer]))
    layers, x = [], features
    for name, members in units:
        unit = torch.nn.Sequential(*members)
        inputs = x.detach().requires_grad_(True)
        forward = _median_ms(lambda unit=unit, inputs=inputs: unit(inputs), repeats)
        output = unit(inputs)
        grad = torch.randn_like(output)
        wrt = [inputs, *unit.parameters()]  # the weights' gradients are half a convolution's backward pass
        backward = _median_ms(lambda output=output, wrt=wrt, grad=grad: torch.autograd.grad(
            output, wrt, grad, retain_graph=True), repeats)
        layers.append({"layer": name, "output": list(output.shape[1:]), "forward_ms": round(forward, 3),
                       "backward_ms": round(backward, 3)})
        x = output.detach()

    def step() -> None:
        loss = F.mse_loss(decoder(features), images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    whole = _median_ms(step, repeats)
    with torch.no_grad():
        feature_ms = _median_ms(lambda: representation(images), repeats)
    update_ms = _median_ms(optimizer.step, repeats)
    parameters = sum(p.numel() for p in decoder.parameters())
    return {"recipe": recipe, "batch_size": config.batch_size, "parameters": parameters, "layers": layers,
            "step_ms": round(whole, 2), "features_ms": round(feature_ms, 2), "adam_update_ms": round(update_ms, 2)}


def _print_runs(title: str, rows: list[dict[str, Any]]) -> None:
    print_table(title, ["recipe", "seed", "steps", "seconds", "images/s", "normalized error", "PSNR", "SSIM"],
                [[r["recipe"], r["seed"], f"{r['steps']:,}", r["seconds"], r["images_per_s"],
                  f"{r['normalized_error']:.4f}", f"{r['psnr']:.2f}", f"{r['ssim']:.3f}"] for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["steps", "time", "profile"])
    parser.add_argument("--pairs", nargs="+", default=["hog-64-conv:hog-64"], help="BASELINE:CANDIDATE recipes")
    parser.add_argument("--recipes", nargs="+", default=["hog-64-conv", "hog-64"], help="recipes to profile")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds of training per run")
    parser.add_argument("--limit", type=int, help="score on the first N validation images (default: all)")
    parser.add_argument("--repeats", type=int, default=50, help="timings per layer (profile)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "decoders")
    parser.add_argument("--results", type=Path, help="JSON path (default bench/results/decoders-PART.json)")
    args = parser.parse_args()
    header = start(f"decoders: {args.part}")
    if args.part == "profile":
        profiles = [step_profile(recipe, args.repeats) for recipe in args.recipes]
        for p in profiles:
            total = sum(layer["forward_ms"] + layer["backward_ms"] for layer in p["layers"])
            print_table(f"{p['recipe']}: {p['parameters']:,} parameters, batch {p['batch_size']}, step "
                        f"{p['step_ms']} ms (features {p['features_ms']} ms, Adam update {p['adam_update_ms']} ms)",
                        ["layer", "output", "forward ms", "backward ms", "share of layers"],
                        [[layer["layer"], "x".join(map(str, layer["output"])), layer["forward_ms"],
                          layer["backward_ms"], f"{(layer['forward_ms'] + layer['backward_ms']) / total:.0%}"]
                         for layer in p["layers"]])
        write_results(args.results, "decoders-profile.json", header | {"profiles": profiles})
        return
    root = shards()
    if root is None:
        sys.exit("these comparisons need the Tiny ImageNet shards (set REPINV_SHARED_DATA): none found")
    data, val = str(root / "train-*.tar"), str(root / "val-000.tar")
    rows = equal_steps(args, data, val) if args.part == "steps" else equal_time(args, data, val)
    _print_runs("equal steps" if args.part == "steps" else "equal time", rows)
    write_results(args.results, f"decoders-{args.part}.json", header | {"runs": rows})


if __name__ == "__main__":
    main()
