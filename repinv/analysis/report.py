"""One self-contained HTML page about runs and results, readable without the terminal.

For each run directory (:mod:`repinv.rundir`) it shows the training curve (the training log: training loss, and
validation error when logged, against the step; drawn with matplotlib's Agg backend), the latest sample grids, the
evaluation (its JSON and grid), the settings and every result file found in it. Result files (``*.json`` from
``repinv compare``, ``repinv analyze`` or ``repinv evaluate``) can also be
given directly. A compare result becomes a table with its grid; any other result is shown as tables of its
numbers, with every PNG it names (or that sits beside it with the same stem). Images are embedded as base64
data URIs, so the page is one file that can be mailed or archived; it needs no JavaScript.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from repinv.errors import DataError
from repinv.files import atomic_write
from repinv.rundir import RunDir

__all__ = ["report", "training_curve_png"]

LATEST_SAMPLES = 3
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; } img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
figure { display: inline-block; margin: .5em 1em .5em 0; vertical-align: top; }
figcaption { font-size: .85em; color: #555; } pre { background: #f7f7f7; padding: .6em; overflow-x: auto; }
.note { color: #666; font-size: .9em; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    with Image.open(io.BytesIO(png)) as image:
        width = image.width
    # small grids (64x64 tiles) are shown enlarged, pixels kept sharp (image-rendering in the style)
    shown = width * max(1, min(4, 600 // max(width, 1)))
    return (f'<figure><img src="data:image/png;base64,{data}" width="{shown}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _e(value)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path} as JSON ({error})") from None


def training_curve_png(records: Sequence[dict[str, Any]]) -> bytes | None:
    """A PNG of training loss (and validation normalized error, when logged) against the step.

    Args:
        records: the training log's records.

    Returns:
        PNG bytes, or None when there is nothing to plot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # a Figure object, not pyplot: no global state, no display

    train = [(r["step"], r["loss"]) for r in records if "loss" in r and "step" in r]
    val = [(r["step"], r["val"]["normalized_error"]) for r in records
           if isinstance(r.get("val"), dict) and "normalized_error" in r["val"]]
    if not train and not val:
        return None
    figure = Figure(figsize=(7, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    if train:
        axis.plot(*zip(*train), color="tab:blue", label="training loss (MSE)")
        axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel("training loss")
    axis.grid(alpha=0.3)
    if val:
        other = axis.twinx()
        other.plot(*zip(*val), "o-", color="tab:orange", label="validation normalized error")
        other.set_ylabel("validation normalized error")
        figure.legend(loc="upper right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_number(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _compare_section(result: dict[str, Any], folder: Path) -> str:
    from repinv.analysis.compare import METRICS

    rows = [[m["method"]] + [m.get(key, "–") for key, _, _ in METRICS] for m in result["methods"]]
    parts = [f'<p class="note">{_e(result.get("images"))} images from {_e(", ".join(result.get("data", [])))}, '
             f'{_e(result.get("representation", {}).get("name", "?"))} at '
             f'{_e("x".join(map(str, result.get("image_size", []))))}, device {_e(result.get("device", "?"))}, '
             f'batch {_e(result.get("batch_size", "?"))}</p>',
             _table(["method"] + [label for _, label, _ in METRICS], rows)]
    grid = folder / result.get("files", {}).get("grid", "compare.png")
    if grid.is_file():
        parts.append(_img(grid.read_bytes(), "test images (first column) and each method's reconstruction"))
    return "".join(parts)


def _flat_rows(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Scalars of a nested JSON value as (dotted key, value) rows."""
    if isinstance(value, dict):
        return [row for key, item in value.items() for row in _flat_rows(item, f"{prefix}{key}.")]
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return [(prefix.rstrip("."), ", ".join(map(str, value)))]
    if isinstance(value, list):
        return [row for i, item in enumerate(value) for row in _flat_rows(item, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), value)]


def _generic_section(result: Any, path: Path) -> str:
    """Any other result: a table of its values and every PNG it names or that shares its stem."""
    rows = _flat_rows(result)
    parts = [_table(["key", "value"], rows[:400])]
    if len(rows) > 400:
        parts.append(f'<p class="note">{len(rows) - 400} more values in {_e(path.name)}</p>')
    named = {path.parent / v for _, v in rows if isinstance(v, str) and v.lower().endswith(".png")}
    named |= set(path.parent.glob(f"{path.stem}*.png"))
    for png in sorted(p for p in named if p.is_file()):
        parts.append(_img(png.read_bytes(), png.name))
    return "".join(parts)


def _result_section(path: Path) -> str:
    result = _read_json(path)
    title = f"<h3>{_e(path.name)}</h3>"
    if isinstance(result, dict) and isinstance(result.get("methods"), list) and all(
            isinstance(m, dict) and "method" in m for m in result["methods"]):
        return title + _compare_section(result, path.parent)
    if isinstance(result, dict) and isinstance(result.get("decoder"), dict):  # repinv evaluate
        keys = sorted(set(result["decoder"]) | set(result.get("mean_image", {})))
        rows = [[k, result["decoder"].get(k, "–"), result.get("mean_image", {}).get(k, "–")] for k in keys]
        grid = path.with_suffix(".png")
        return (title + f'<p class="note">{_e(result.get("images"))} images from '
                f'{_e(", ".join(result.get("data", [])))}</p>' + _table(["metric", "decoder", "mean image"], rows)
                + (_img(grid.read_bytes(), grid.name) if grid.is_file() else ""))
    return title + _generic_section(result, path)


def _run_section(run: Path) -> str:
    folder = RunDir(run)
    parts = [f"<h2>run {_e(run)}</h2>"]
    records = folder.read_log()
    if records:
        curve = training_curve_png(records)
        last = next((r for r in reversed(records) if "loss" in r), None)
        if curve:
            parts.append("<h3>training curve</h3>" + _img(curve, f"{len(records)} log records"))
        if last:
            parts.append(f'<p class="note">last logged step {_e(last.get("step"))}: loss {_number(last["loss"])}, '
                         f'{_number(last.get("images_per_s", float("nan")))} images/s, '
                         f'{_number(last.get("elapsed", float("nan")))} s</p>')
    samples = folder.sample_grids()[-LATEST_SAMPLES:]
    if samples:
        parts.append("<h3>samples (image | reconstruction)</h3>"
                     + "".join(_img(p.read_bytes(), p.stem) for p in samples))
    parts += [_result_section(p) for p in folder.result_files()]
    settings = folder.read_settings()
    if settings is not None:
        parts.append(f"<h3>settings</h3><pre>{_e(json.dumps(settings, indent=2, sort_keys=True))}</pre>")
    if len(parts) == 1:
        parts.append('<p class="note">nothing to show: no training log, samples or results in this folder</p>')
    return "".join(parts)


def report(paths: Sequence[str | Path], out: str | Path, title: str = "repinv report") -> Path:
    """Write one self-contained HTML page about run directories and result files.

    Args:
        paths: run directories (training curve, samples, evaluation, results found in them) and result JSON files
            (``repinv compare`` / ``analyze`` / ``evaluate``).
        out: a folder (the page is ``out/report.html``) or a path ending in ``.html``.
        title: the page title.

    Returns:
        The HTML file written.

    Raises:
        DataError: no paths, or one that does not exist or is not readable JSON.
    """
    if not paths:
        raise DataError("give at least one run directory or result file to report on")
    sections = []
    for given in map(Path, paths):
        if given.is_dir():
            sections.append(_run_section(given))
        elif given.is_file() and given.suffix == ".json":
            sections.append(f"<h2>results {_e(given)}</h2>" + _result_section(given))
        else:
            raise DataError(f"{given} is neither a run directory nor a .json result file")
    out = Path(out)
    page_path = out if out.suffix == ".html" else out / "report.html"
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>{''.join(sections)}</body></html>\n")
    atomic_write(page_path, lambda p: p.write_text(page, encoding="utf-8"))
    return page_path
