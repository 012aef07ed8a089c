"""What the benchmark scripts share: the machine's description, data, child processes, tables and JSON.

Every script prints the exact command line and the machine (CPU, cores, load, library versions, torch threads) at
the top, so a figure can always be traced back to how and where it was measured, and writes the same header into
its JSON. Training runs are separate processes (``python -m repinv train``), reaped with :func:`os.wait4`, whose
resource usage gives each configuration's own peak resident memory, untouched by the benchmark process itself.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from repinv.data.sources import default_data_root
from repinv.files import write_json
from repinv.progress import console
from repinv.registry.factories import build_decoder
from repinv.representations.base import FeatureSpec
from repinv.training.config import TrainConfig, load_recipe

__all__ = ["LOG_EVERY", "REPO", "RESULTS", "ChildRun", "display", "machine_info", "mib", "print_table",
           "random_weights", "recipe_decoder", "repinv_command", "run_child", "shards", "start", "subset_tar",
           "train_throughput", "training_images", "training_rate", "write_results"]

REPO = Path(__file__).resolve().parents[1]
#: Where each script writes its JSON unless told otherwise (ignored by git: figures go into docs/benchmarks.md).
RESULTS = REPO / "bench" / "results"
#: Steps between lines of a run's metrics.jsonl (TrainConfig.log_every, which the CLI does not change).
LOG_EVERY = 50
#: Load average per core above which timings are flagged as taken on a busy machine.
_BUSY_LOAD_PER_CORE = 0.25


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(module: str) -> str | None:
    try:
        return str(__import__(module).__version__)
    except ImportError:
        return None


def machine_info() -> dict[str, Any]:
    """The machine and software a figure was measured with.

    Returns:
        JSON-able: CPU model, logical cores (and those this process may use), memory, load average, Python,
        torch (and its thread count), NumPy, OpenCV, scikit-image, and the CUDA device when there is one.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": _memory_gib(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": _version("numpy"),
        "opencv": _version("cv2"),
        "scikit_image": _version("skimage"),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def display(command: Sequence[str], env: dict[str, str] | None = None) -> str:
    """A command as one would type it: ``ENV=1 repinv train ...`` for ``python -m repinv``, paths as given."""
    words = list(command)
    if words[:3] == [sys.executable, "-m", "repinv"]:
        words = ["repinv", *words[3:]]
    elif words and words[0] == sys.executable:
        words[0] = "python"
    prefix = " ".join(f"{key}={value}" for key, value in (env or {}).items())
    return f"{prefix} {shlex.join(words)}".strip()


def start(title: str) -> dict[str, Any]:
    """Print the command line and the machine, warn when the machine is busy; return the header for the JSON.

    Args:
        title: what the script measures (first line of the output).

    Returns:
        ``{"command": ..., "machine": ...}``.
    """
    info = machine_info()
    command = display([sys.executable, *sys.argv])
    console.print(f"[bold]{title}[/bold]")
    console.print(f"command: {command}")
    cuda = f", CUDA: {info['cuda_device']}" if info["cuda_device"] else ""
    console.print(f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
                  f"{info['memory_gib']} GiB, load {info['load_average_1min']}{cuda}")
    console.print(f"software: Python {info['python']}, torch {info['torch']} ({info['torch_threads']} threads), "
                  f"NumPy {info['numpy']}, OpenCV {info['opencv']}, scikit-image {info['scikit_image']}")
    if info["load_average_1min"] > _BUSY_LOAD_PER_CORE * (info["usable_cores"] or 1):
        console.print(f"[yellow]warning: load average {info['load_average_1min']} on {info['usable_cores']} cores: "
                      "other work is running, so these figures are not comparable with an idle machine's[/yellow]")
    return {"command": command, "machine": info}


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                notes: Sequence[str] = ()) -> None:
    """Print a table (numbers right-aligned) and notes below it."""
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)  # names are never cut
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console.print(table)
    for note in notes:
        console.print(f"  {note}", highlight=False)


def write_results(path: Path | None, default_name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as JSON to ``path``, or to ``bench/results/<default_name>`` when ``path`` is ``None``."""
    target = Path(path) if path is not None else RESULTS / default_name
    target.parent.mkdir(parents=True, exist_ok=True)
    write_json(target, payload)
    console.print(f"results: {target}")
    return target


def shards() -> Path | None:
    """The shared Tiny ImageNet shards (``$REPINV_SHARED_DATA/tiny-imagenet-64``), or ``None`` when absent."""
    root = default_data_root() / "tiny-imagenet-64"
    return root if (root / "val-000.tar").is_file() and (root / "train-000.tar").is_file() else None


def subset_tar(sources: Sequence[Path], count: int, dest: Path) -> Path:
    """A tar shard of the first ``count`` image members of ``sources`` (reused when already made).

    Args:
        sources: tar shards, read in order.
        count: images to copy.
        dest: the shard to write.

    Returns:
        ``dest``.

    Raises:
        ValueError: the sources hold fewer than ``count`` images.
    """
    marker = dest.with_suffix(".count")
    if dest.is_file() and marker.is_file() and marker.read_text() == str(count):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    copied = 0
    with tarfile.open(dest, "w") as out:
        for source in sources:
            with tarfile.open(source, "r:") as shard:
                for member in shard:
                    if copied == count:
                        break
                    if member.isreg() and member.name.lower().endswith((".jpg", ".jpeg", ".png")):
                        out.addfile(member, shard.extractfile(member))
                        copied += 1
    if copied < count:
        raise ValueError(f"{', '.join(map(str, sources))} hold only {copied} images, not {count}")
    marker.write_text(str(count))
    return dest


def training_images(count: int, workdir: Path) -> tuple[str, str]:
    """The training source: a tar of the first ``count`` images of the shared Tiny ImageNet training shards, or
    ``builtin`` when they are absent. Returns ``(source, description)``."""
    root = shards()
    if root is None:
        return "builtin", "scikit-image's 5 builtin photos (shared Tiny ImageNet shards absent: not representative)"
    source = subset_tar(sorted(root.glob("train-*.tar")), count, workdir / f"train-{count}.tar")
    return str(source), f"the first {count:,} images of {root}/train-*.tar (64x64 JPEGs)"


@dataclass
class ChildRun:
    """A finished child process."""

    returncode: int
    seconds: float  # wall time
    peak_rss: int  # bytes: the largest resident set of the child and of its own children (loader workers)
    output: str  # stdout and stderr, interleaved

    def check(self, what: str) -> None:
        """Raise ``RuntimeError`` with the end of the output when the child failed."""
        if self.returncode != 0:
            raise RuntimeError(f"{what} failed (exit {self.returncode}):\n{self.output[-3000:]}")


def run_child(command: Sequence[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run ``command`` to completion and measure its peak resident memory.

    The peak comes from ``wait4``'s resource usage: the maximum resident set size of the child, or of any of its
    children it waited for (data-loader workers), whichever is largest; not their sum.

    Args:
        command: the argument vector.
        env: variables to set on top of this process's environment.
    """
    with tempfile.TemporaryFile() as log:
        began = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                   cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        log.seek(0)
        output = log.read().decode("utf-8", "replace")
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return ChildRun(process.returncode, seconds, peak, output)


def repinv_command(*args: str) -> list[str]:
    """``python -m repinv ARGS`` with this interpreter, so the benchmark measures the repinv it imports."""
    return [sys.executable, "-m", "repinv", *args]


def training_rate(run: Path, warmup_steps: int) -> dict[str, float]:
    """Training throughput after warm-up, from a run directory's ``metrics.jsonl``.

    The rate is taken between the first logged step at or after ``warmup_steps`` and the last logged step, from
    the run's own clock (``elapsed``), so start-up, the first batches and the final checkpoint are excluded.

    Args:
        run: the run directory.
        warmup_steps: steps to leave out at the start (at least one logging window).

    Returns:
        ``images_per_s``, ``steps`` measured, ``seconds`` measured, ``batch_size``, and the median of the
        per-window rates the run logged (``window_median``).
    """
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    records = [r for r in records if "images_per_s" in r]
    batch = int(json.loads((run / "config.json").read_text())["batch_size"])
    measured = [r for r in records if r["step"] >= warmup_steps]
    if len(measured) < 2:
        raise RuntimeError(f"{run}: fewer than two logged steps after {warmup_steps} warm-up steps; train longer")
    first, last = measured[0], measured[-1]
    steps, seconds = last["step"] - first["step"], last["elapsed"] - first["elapsed"]
    return {"images_per_s": steps * batch / seconds, "steps": steps, "seconds": seconds, "batch_size": batch,
            "window_median": statistics.median(r["images_per_s"] for r in measured[1:])}


def mib(size: int) -> float:
    """Bytes in MiB, one decimal."""
    return round(size / 2**20, 1)


def random_weights(recipe: str) -> list[str]:
    """``["weights=none"]`` for a recipe whose representation has pretrained weights (AlexNet, timm), else ``[]``:
    benchmarks run offline, and random weights cost the same time as trained ones."""
    return ["weights=none"] if "weights" in load_recipe(recipe).get("rep_options", {}) else []


def train_throughput(recipe: str, out: Path, *, steps: int, warmup: int, threads: int, data: str | None = None,
                     features: Path | None = None, workers: int | None = None, device: str = "cpu",
                     wait_policy: str | None = None) -> dict[str, Any]:
    """Run ``repinv train`` with a recipe in a child process; measure its images/s after warm-up and its peak RSS.

    Args:
        recipe: a shipped recipe (pretrained weights are replaced by random ones, see :func:`random_weights`).
        out: the run directory (removed first when it exists).
        steps: steps to measure, rounded up to whole logging windows (:data:`LOG_EVERY`).
        warmup: steps before the measurement, rounded up likewise (at least one window).
        threads: torch threads of the training process (``OMP_NUM_THREADS``; loader workers use one each).
        data: the training images (a source string), or
        features: a feature cache to train from.
        workers: data-loader workers (``None``: the recipe's).
        device: the training device.
        wait_policy: ``OMP_WAIT_POLICY`` for the OpenMP threads (``None``: OpenMP's default, spinning for a while
            before sleeping; ``PASSIVE``: sleep at once, which matters when other processes share the cores).

    Returns:
        :func:`training_rate`'s figures, plus ``peak_rss_mib``, ``wall_s`` and the ``command`` as typed.
    """
    windows = -(-max(warmup, 1) // LOG_EVERY) + -(-steps // LOG_EVERY)
    args = ["train", "--recipe", recipe, "--steps", str(windows * LOG_EVERY), "--device", device, "--out", str(out),
            "--quiet"]
    args += ["--data", data] if features is None else ["--features", str(features)]
    for option in random_weights(recipe):
        args += ["--rep-opt", option]
    if workers is not None:
        args += ["--workers", str(workers)]
    env = {"OMP_NUM_THREADS": str(threads), **({"OMP_WAIT_POLICY": wait_policy} if wait_policy else {})}
    command = repinv_command(*args)
    shutil.rmtree(out, ignore_errors=True)  # a --workdir used before holds the last run
    child = run_child(command, env)
    child.check(display(command, env))
    rate = training_rate(out, -(-max(warmup, 1) // LOG_EVERY) * LOG_EVERY)
    return {**rate, "peak_rss_mib": mib(child.peak_rss), "wall_s": round(child.seconds, 1),
            "command": display(command, env)}


def recipe_decoder(config: TrainConfig, spec: FeatureSpec) -> torch.nn.Module:
    """A recipe's decoder for features of ``spec``, as ``repinv.train`` builds it (``width`` is shorthand for a
    decoder option)."""
    size = (config.image_size, config.image_size)
    output = (config.output_size or config.image_size,) * 2
    return build_decoder(spec, size, config.decoder, output, **config.decoder_arguments())
