"""Loss terms compared (DeePSiM's feature and adversarial losses beside the paper's pixel MSE).

    python bench/losses.py --base hog-64=runs/decoders/time600-hog-64-seed0 \\
        --base lite0-blocks.5=runs/study-lite0/runs/trained/blocks.5 --steps 1000

From each shared ``mse`` checkpoint (``--base NAME=RUN``), three decoders are fine-tuned for the same ``--steps``
with the base run's settings, each starting from the base's weights (``init``): ``mse`` alone (the control: more
steps of the same loss), ``mse + feature`` and ``mse + feature + adversarial``. The feature loss compares in the
trained EfficientNet-Lite0 (``$REPINV_SHARED_MODELS``, default ``../shared/models``) at ``--loss-layer`` on the
64x64 images as they are; the perceptual metric uses another layer, ``--metric-layer``, at the network's own 224x224
input, which no decoder trained on. All four decoders (the base too) are then scored by :func:`repinv.compare` on
the same validation photos; its grid shows them side by side.

Runs go to ``--out`` (default ``runs/losses``); a finished run is not trained again. Results:
``bench/results/losses.json``; grids: ``OUT/NAME/compare.png``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from common import REPO, print_table, shards, start, write_results

import repinv
from repinv.progress import console

LOSSES = {"mse": "mse", "mse + feature": "mse + {feature}*feature",
          "mse + feature + adversarial": "mse + {feature}*feature + {adversarial}*adversarial"}
#: Settings of the base run that the fine-tuning runs replace.
REPLACED = ("steps", "epochs", "time_budget", "init", "loss", "loss_options", "lr", "schedule", "seed")


def _weights() -> Path:
    path = Path(os.environ.get("REPINV_SHARED_MODELS", REPO.parent / "shared" / "models"))
    weights = path / "tf_efficientnet_lite0.safetensors"
    if not weights.is_file():
        raise SystemExit(f"no trained EfficientNet-Lite0 at {weights}: set REPINV_SHARED_MODELS")
    return weights


def _base_settings(run: Path) -> dict[str, Any]:
    settings = json.loads((run / "config.json").read_text())
    features = settings.get("features")
    if features and not Path(features).is_dir():  # the layer study writes its cache paths relative to bench/
        settings["features"] = str((REPO / "bench" / features).resolve())
    return {key: value for key, value in settings.items() if key not in REPLACED}


def fine_tune(name: str, base: Path, loss: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train (unless done) one decoder from ``base`` with ``loss``; its run and training time."""
    out = args.out / name / loss.replace(" ", "")
    if not (out / "decoder.safetensors").is_file() or json.loads((out / "state.json").read_text())["step"] < \
            args.steps:
        weights = _weights()
        text = LOSSES[loss].format(feature=args.feature_weight, adversarial=args.adversarial_weight)
        options = {"feature": {"rep": f"timm:tf_efficientnet_lite0:{args.loss_layer}", "weights": str(weights),
                               "input_size": 64}, "adversarial": {}}
        config = repinv.make_config(**_base_settings(base), steps=args.steps, init=str(base), lr=args.lr,
                                    schedule="paper-to-zero", seed=args.seed, loss=text,
                                    loss_options={term: options[term] for term in options if term in text})
        if out.exists():
            repinv.resume(out, show_progress=True)
        else:
            repinv.train(config, out, show_progress=True)
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"elapsed"' in line]
    return {"loss": loss, "run": str(out), "seconds": round(log[-1]["elapsed"], 1), "terms": log[-1]["terms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", nargs="+", required=True, metavar="NAME=RUN", help="shared mse checkpoints")
    parser.add_argument("--steps", type=int, default=1000, help="fine-tuning steps for every loss")
    parser.add_argument("--lr", type=float, default=5e-4, help="fine-tuning rate (the paper-to-zero schedule)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--feature-weight", type=float, default=0.01)
    parser.add_argument("--adversarial-weight", type=float, default=0.002)
    parser.add_argument("--loss-layer", default="blocks.2", help="EfficientNet-Lite0 layer of the feature loss")
    parser.add_argument("--metric-layer", default="blocks.4", help="EfficientNet-Lite0 layer of the metric")
    parser.add_argument("--limit", type=int, default=500, help="validation photos scored")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "losses")
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()
    header = start("loss terms: mse, + feature, + adversarial, fine-tuned from one mse checkpoint")
    root = shards()
    if root is None:
        raise SystemExit("no Tiny ImageNet shards: set REPINV_SHARED_DATA")
    comparator = repinv.Comparator(f"timm:tf_efficientnet_lite0:{args.metric_layer}", weights=str(_weights()))
    bases: list[dict[str, Any]] = []
    for item in args.base:
        name, _, run = item.partition("=")
        runs = [fine_tune(name, Path(run), loss, args) for loss in LOSSES]
        methods = [f"decoder:{run}", *(f"decoder:{row['run']}" for row in runs)]
        scores = repinv.compare(str(root / "val-000.tar"), methods, limit=args.limit, out=args.out / name,
                                comparator=comparator, show_progress=True)
        labels = ["mse (base)", *LOSSES]
        rows = [{"label": label, **{key: score[key] for key in ("normalized_error", "perceptual_error", "psnr",
                                                                  "ssim", "feature_error") if key in score}}
                for label, score in zip(labels, scores["methods"])]
        for row, trained in zip(rows[1:], runs):
            row.update(seconds=trained["seconds"], run=trained["run"])
        bases.append({"name": name, "base": run, "comparator": scores["comparator"], "rows": rows,
                      "grid": str(args.out / name / "compare.png"), "order": labels})
        print_table(f"{name}: {args.steps} steps from {run}, {scores['images']} validation photos; perceptual: "
                    f"{scores['comparator']}", ["loss", "normalized error", "perceptual", "PSNR", "SSIM", "s"],
                    [[r["label"], f"{r['normalized_error']:.4f}", f"{r['perceptual_error']:.4f}", f"{r['psnr']:.2f}",
                      f"{r['ssim']:.3f}", r.get("seconds", "–")] for r in rows])
    write_results(args.results, "losses.json", {**header, "steps": args.steps, "lr": args.lr,
                                                "feature_weight": args.feature_weight,
                                                "adversarial_weight": args.adversarial_weight,
                                                "loss_layer": args.loss_layer, "bases": bases})
    console.print("grids: " + ", ".join(base["grid"] for base in bases))


if __name__ == "__main__":
    main()
