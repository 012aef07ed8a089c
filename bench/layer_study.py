"""What a trained network keeps, layer by layer: the paper's section 4 on a real network (one resumable command).

    python bench/layer_study.py                        # ../shared/models' trained EfficientNet-Lite0, 8 layers
    python bench/layer_study.py --model resnet50 --weights resnet50.safetensors \
        --layers layer1 layer2 layer3 layer4 pooled logits --out runs/study-resnet50     # any timm backbone
    python bench/layer_study.py --steps 20 --train-images 256 --val-images 64 --out /tmp/smoke   # a quick check

For the trained weights and for ``weights=none`` (the same architecture, random), with one budget for every layer
(the ``lite0-*`` recipes: same steps, batch, width and schedule; another model's layers get the same budget):

1. caches the features of a fixed training subset (the first 10,000 images of ``train-000.tar``, 64x64, which the
   network sees at 224x224) for all eight layers from one pass over the images (float16);
2. trains one decoder per layer from its cache;
3. scores every decoder on the first 2,000 images of ``val-000.tar`` with the perturbations of the paper's Figure 7
   (``repinv analyze``), and the logits' decoders also with keep-top:5 and drop-top:5;
4. measures whether the trained network still recognises its reconstructions (top-1 agreement, logits);
5. draws the figures: the paper's Figure 5 (the same photos from every layer, trained beside random), Figure 7
   (error per layer per perturbation), colour and layout errors per layer, an interpolation and random samples.

Everything lands in ``--out`` (``study.json`` with every number, ``summary.md`` with the tables, PNG figures).
Every stage skips what is already done, so running the command again continues an interrupted study; the total
time of all sessions is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from common import shards, subset_tar

from repinv import analyze, load_decoder, make_config, resume, sample_images, train, write_interpolation_strip
from repinv.analysis.perturbations import apply_perturbation
from repinv.analysis.studies import MEAN_IMAGE, REFERENCE
from repinv.data.cache import FeatureCache, cache_features, cache_folder_name
from repinv.data.sources import ImageDataset, default_data_root, evaluation_loader
from repinv.files import write_json
from repinv.pictures import write_image_table
from repinv.rundir import RunDir

TRAINED = default_data_root().parent / "models" / "tf_efficientnet_lite0.safetensors"
MODEL = "tf_efficientnet_lite0"
#: EfficientNet-Lite0's studied layers, shallow to deep, and their recipes (one budget: only the layer differs).
LAYERS = {"blocks.1": "lite0-blocks1", "blocks.2": "lite0-blocks2", "blocks.3": "lite0-blocks3",
          "blocks.4": "lite0-blocks4", "blocks.5.0.bn2": "lite0-blocks5-relu6", "blocks.5": "lite0-blocks5",
          "pooled": "lite0-pooled", "logits": "lite0-logits"}  # blocks.5.0.bn2 is inside blocks.5's first block
#: The budget recipe for another model's layers (training from a cache takes the layer from the cache).
BUDGET = "lite0-logits"
PERTURBATIONS = ["dropout:0.5", "binarize"]
TOP_K = ["keep-top:5", "drop-top:5"]
FIGURE_PHOTOS = 8


class Study:
    """The study's folder and its record (``study.json``): stage times and results, kept across sessions."""

    def __init__(self, out: Path, args: argparse.Namespace) -> None:
        self.out = out
        self.args = args
        self.record_file = out / "study.json"
        self.record: dict[str, Any] = (json.loads(self.record_file.read_text()) if self.record_file.is_file()
                                       else {"seconds": {}, "results": {}})
        self.weights = {"trained": args.weights, "random": "none"}
        self.layers: list[str] = args.layers

    def save(self) -> None:
        write_json(self.record_file, self.record)

    def stage(self, name: str, work: Callable[[], None]) -> None:
        """Run one stage and add its time to the record (a stage skips what earlier sessions finished)."""
        print(f"== {name}", flush=True)
        begin = time.perf_counter()
        work()
        self.record["seconds"][name] = self.record["seconds"].get(name, 0.0) + time.perf_counter() - begin
        self.save()

    # -- data and features -------------------------------------------------------------------------------------
    def train_data(self) -> str:
        root = shards()
        if root is None:
            raise SystemExit("the shared Tiny ImageNet shards are absent (set REPINV_SHARED_DATA)")
        return str(subset_tar([root / "train-000.tar"], self.args.train_images,
                              self.out / f"train-{self.args.train_images}.tar"))

    def val_data(self) -> str:
        root = shards()
        assert root is not None  # train_data checked
        return str(root / "val-000.tar")

    def reps(self) -> list[str]:
        return [f"timm:{self.args.model}:{layer}" for layer in self.layers]

    def cache_dir(self, weights: str) -> Path:
        return self.out / "features" / weights

    def run_dir(self, weights: str, layer: str) -> Path:
        return self.out / "runs" / weights / layer

    def features(self) -> None:
        for name, weights in self.weights.items():
            cache_features(self.reps(), self.train_data(), self.cache_dir(name), rep_options={"weights": weights},
                           image_size=64, batch_size=64, workers=1, dtype="float16")

    # -- decoders ----------------------------------------------------------------------------------------------
    def training(self) -> None:
        for name in self.weights:
            for layer, rep in zip(self.layers, self.reps()):
                run = self.run_dir(name, layer)
                overrides: dict[str, Any] = {"workers": 0}
                if self.args.steps is not None:
                    overrides["steps"] = self.args.steps
                recipe = LAYERS[layer] if self.args.model == MODEL else BUDGET
                config = make_config(recipe, features=str(self.cache_dir(name) / cache_folder_name(rep)),
                                     **overrides)
                if not RunDir(run).holds_state():
                    print(f"-- {name} {layer}: training", flush=True)
                    train(config, run)
                elif RunDir(run).metadata()["step"] < config.total_steps(self.args.train_images):
                    print(f"-- {name} {layer}: resuming", flush=True)
                    resume(run)

    def post_activation(self) -> list[str]:
        """The layers whose features are never negative (after a ReLU-like activation): where binarizing, which
        keeps signs, means something (on signed, linear outputs it does not)."""
        cache = self.cache_dir("trained")
        found = self.record.setdefault("non_negative", {})
        for layer, rep in zip(self.layers, self.reps()):
            if layer not in found:
                features = FeatureCache(cache / cache_folder_name(rep))
                found[layer] = all(bool((features[i][1] >= 0).all()) for i in range(min(256, len(features))))
        return [layer for layer in self.layers if found[layer]]

    # -- scores ------------------------------------------------------------------------------------------------
    def analysis(self) -> None:
        results = self.record["results"].setdefault("analysis", {})
        for name in self.weights:
            runs = [self.run_dir(name, layer) for layer in self.layers]
            if name not in results:
                results[name] = analyze(runs, self.val_data(), PERTURBATIONS, out=self.out / "analysis" / name,
                                        limit=self.args.val_images, device="cpu", show_progress=True)
                self.save()
            if "logits" in self.layers and f"{name}-logits" not in results:
                results[f"{name}-logits"] = analyze([self.run_dir(name, "logits")], self.val_data(), TOP_K,
                                                    out=self.out / "analysis" / f"{name}-logits",
                                                    limit=self.args.val_images, device="cpu", show_progress=True)
                self.save()

    @torch.no_grad()
    def recognition(self) -> None:
        """Does the trained network still classify its reconstructions as it classified the photos? The share of
        validation images whose top-1 class on the reconstruction equals that on the photo, per feature
        perturbation of the logits' decoder; and, as a control, on the photo itself reduced to 16x16 and 8x8 (block
        means, upsampled again): how much a blur of about the reconstructions' own costs the network."""
        if "logits" not in self.layers or "recognition" in self.record["results"]:
            return
        inverter = load_decoder(self.run_dir("trained", "logits"), "cpu")
        network = inverter.representation
        loader = evaluation_loader(self.val_data(), inverter.image_size, limit=self.args.val_images, batch_size=50)
        controls = {f"photo at {side}x{side}": side for side in (16, 8)}
        rows = [REFERENCE, *TOP_K, *controls]
        agree = dict.fromkeys(rows, 0)
        in_top5 = dict.fromkeys(rows, 0)
        first = 0
        for images in loader:
            logits = network(images)
            original = logits.argmax(1)
            for row in rows:
                if row in controls:
                    small = F.interpolate(images, size=controls[row], mode="area")
                    again = network(F.interpolate(small, size=images.shape[-2:], mode="bilinear"))
                else:
                    features = logits if row == REFERENCE else apply_perturbation(row, logits, first_index=first)
                    again = network(inverter.decode(features).clamp(0, 1))
                agree[row] += int((again.argmax(1) == original).sum())
                in_top5[row] += int((again.topk(5, dim=1).indices == original[:, None]).any(1).sum())
            first += images.shape[0]
        self.record["results"]["recognition"] = {
            "images": first, "chance": 1 / logits.shape[1],
            "top1_agreement": {row: agree[row] / first for row in rows},
            "original_top1_in_top5": {row: in_top5[row] / first for row in rows}}

    # -- figures -----------------------------------------------------------------------------------------------
    def figure_photos(self) -> torch.Tensor:
        photos = ImageDataset(self.val_data(), 64, train=False)
        stride = max(1, min(self.args.val_images, len(photos)) // FIGURE_PHOTOS)
        return torch.stack([photos[i * stride] for i in range(FIGURE_PHOTOS)])

    @torch.no_grad()
    def figures(self) -> None:
        photos = self.figure_photos()
        columns, labels = [photos], ["photo"]
        for layer in self.layers:
            for name in self.weights:
                inverter = load_decoder(self.run_dir(name, layer), "cpu")
                columns.append(inverter.decode(inverter.features(photos)).clamp(0, 1))
                labels.append(f"{layer}: {name}")
        write_image_table(columns, self.out / "figure5-layers.png", labels)
        self.plot_per_layer()
        for deep in [layer for layer in ("blocks.5", "pooled") if layer in self.layers] or self.layers[-1:]:
            write_interpolation_strip(load_decoder(self.run_dir("trained", deep), "cpu"), photos[2], photos[4],
                                      self.out / f"interpolation-{deep}.png", steps=8)
        deepest = load_decoder(self.run_dir("trained", self.layers[-1]), "cpu")
        _, summary = sample_images(deepest, self.train_data(), "histogram", n=16, limit=1024,
                                   grid=self.out / f"samples-{self.layers[-1]}.png")
        self.record["results"]["samples"] = summary

    def rows(self, name: str) -> dict[str, dict[str, Any]]:
        """Layer -> the analysis entry of that layer's decoder."""
        entries = self.record["results"]["analysis"][name]["checkpoints"]
        return {entry["representation"].split(":", 2)[2]: entry for entry in entries}

    def plot_per_layer(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        x = list(range(len(self.layers)))
        post_activation = self.post_activation()
        figure = Figure(figsize=(12, 4.2), dpi=120)
        FigureCanvasAgg(figure)
        panels = figure.subplots(1, 3)
        panels[1].sharey(panels[0])  # trained and random on one scale
        for axes, name in zip(panels[:2], self.weights):
            rows = self.rows(name)
            for perturbation, label in ((REFERENCE, "no perturbation"), ("dropout:0.5", "dropout 50%")):
                axes.plot(x, [rows[layer]["results"][perturbation]["normalized_error"] for layer in self.layers],
                          marker="o", label=label)
            binarized = [i for i, layer in enumerate(self.layers) if layer in post_activation]
            axes.plot(binarized, [rows[self.layers[i]]["results"]["binarize"]["normalized_error"] for i in binarized],
                      marker="s", linestyle="none", label="binarize (non-negative layers)")
            logits = self.record["results"]["analysis"].get(f"{name}-logits")
            if logits:
                for perturbation, marker in zip(TOP_K, ("^", "v")):
                    axes.plot([x[-1]], [logits["checkpoints"][0]["results"][perturbation]["normalized_error"]],
                              marker=marker, linestyle="none", label=perturbation)
            axes.plot(x, [rows[layer]["baseline"]["normalized_error"] for layer in self.layers], color="gray",
                      linestyle="--", label=MEAN_IMAGE)
            axes.set_title(f"{name} network: reconstruction error")
        trained, random = self.rows("trained"), self.rows("random")
        for metric, style in (("colour_error", "-"), ("layout_error", ":")):
            for name, rows, colour in (("trained", trained, "C0"), ("random", random, "C3")):
                panels[2].plot(x, [rows[layer]["results"][REFERENCE][metric] for layer in self.layers],
                               marker="o", linestyle=style, color=colour, label=f"{metric.split('_')[0]}, {name}")
            panels[2].plot(x, [trained[layer]["baseline"][metric] for layer in self.layers], color="gray",
                           linestyle=style, label=f"{metric.split('_')[0]}, mean image")
        panels[2].set_title("colour and 4x4 layout errors")
        for axes in panels:
            axes.set_xticks(x, self.layers, rotation=35, ha="right")
            axes.set_ylim(bottom=0)
            axes.grid(alpha=0.3)
            axes.legend(fontsize="x-small")
        panels[0].set_ylabel("normalized error (0 exact, ~1 another photo)")
        figure.tight_layout()
        figure.savefig(self.out / "figure7-per-layer.png", format="png")

    # -- the summary -------------------------------------------------------------------------------------------
    def summary(self) -> str:
        trained, random = self.rows("trained"), self.rows("random")
        lines = ["| layer | trained | random | trained, dropout 50% | trained, binarize | colour T / R / mean | "
                 "layout T / R / mean |", "|---|---|---|---|---|---|---|"]
        post_activation = self.post_activation()
        for layer in self.layers:
            t, r = trained[layer]["results"], random[layer]["results"]
            binarized = f"{t['binarize']['normalized_error']:.3f}" if layer in post_activation else "(signed: n/a)"
            lines.append(
                f"| {layer} | {t[REFERENCE]['normalized_error']:.3f} | {r[REFERENCE]['normalized_error']:.3f} | "
                f"{t['dropout:0.5']['normalized_error']:.3f} | {binarized} | "
                f"{t[REFERENCE]['colour_error']:.3f} / {r[REFERENCE]['colour_error']:.3f} / "
                f"{trained[layer]['baseline']['colour_error']:.3f} | {t[REFERENCE]['layout_error']:.3f} / "
                f"{r[REFERENCE]['layout_error']:.3f} / {trained[layer]['baseline']['layout_error']:.3f} |")
        lines.append(f"\nmean image: {trained[self.layers[0]]['baseline']['normalized_error']:.3f}")
        for name in ("trained-logits", "random-logits"):
            entry = self.record["results"]["analysis"].get(name)
            if entry:
                rows = entry["checkpoints"][0]["results"]
                lines.append(f"{name}: " + ", ".join(f"{row} {rows[row]['normalized_error']:.3f}"
                                                     for row in (REFERENCE, *TOP_K)))
        recognition = self.record["results"].get("recognition")
        if recognition:
            lines.append(f"recognition on {recognition['images']} photos (chance {recognition['chance']:.1%}): " +
                         ", ".join(f"{row} top-1 agreement {recognition['top1_agreement'][row]:.1%} (photo's class "
                                   f"in top 5: {recognition['original_top1_in_top5'][row]:.1%})"
                                   for row in recognition["top1_agreement"]))
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=MODEL, help=f"a timm model (default {MODEL})")
    parser.add_argument("--weights", help=f"the trained network's weights file (default for {MODEL}: {TRAINED})")
    parser.add_argument("--out", type=Path, default=Path("runs/study-lite0"), help="the study's folder")
    parser.add_argument("--layers", nargs="+", metavar="LAYER",
                        help=f"layers, shallow to deep (`repinv reps timm:MODEL`; for {MODEL}: {' '.join(LAYERS)})")
    parser.add_argument("--train-images", type=int, default=10_000, help="training subset (first of train-000)")
    parser.add_argument("--val-images", type=int, default=2_000, help="scored images (first of val-000)")
    parser.add_argument("--steps", type=int, help="override the recipes' steps (a quick check; not the study)")
    args = parser.parse_args(argv)
    if args.model != MODEL and not (args.weights and args.layers):
        raise SystemExit(f"for {args.model}, give --weights FILE and --layers (see `repinv reps timm:{args.model}`)")
    args.weights = args.weights or str(TRAINED)
    args.layers = args.layers or list(LAYERS)
    if not Path(args.weights).is_file():
        raise SystemExit(f"no weights file at {args.weights}: give --weights FILE (a timm state dict)")
    args.out.mkdir(parents=True, exist_ok=True)
    study = Study(args.out, args)
    session = time.perf_counter()
    study.stage("features", study.features)
    study.stage("training", study.training)
    study.stage("analysis", study.analysis)
    study.stage("recognition", study.recognition)
    study.stage("figures", study.figures)
    summary = study.summary()
    (args.out / "summary.md").write_text(summary + "\n")
    print(summary)
    total = sum(study.record["seconds"].values())
    print(f"\nstudy time: {total / 60:.1f} min in all sessions ({(time.perf_counter() - session) / 60:.1f} min in "
          f"this one); results in {args.out}")


if __name__ == "__main__":
    main()
