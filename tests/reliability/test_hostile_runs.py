"""Weights, run directories and feature caches under hostile conditions.

Each case gives repinv something a user (or a crash, or a second process) could leave behind — a pickle that runs
code, a file cut short, shapes or metadata edited by hand, a run from another representation or a newer repinv, two
processes on one folder — and asserts the exact behaviour: a typed error of one line that names the file and what to
do (``Error: …`` and exit status 1 through the CLI), never a traceback, never code run, never silently wrong
features. It also asserts that refusing never loses or changes a file the user had: the folder's files are hashed
before and after.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import repinv
from repinv.cli import cli
from repinv.data.cache import FeatureCache, cache_features
from repinv.errors import CacheError, CheckpointError, InvalidOption
from repinv.inversion.linear import load_linear
from repinv.rundir import RunDir

REPO = Path(__file__).resolve().parents[2]
#: The run files the cases damage (named here, not in the library: tests may spell them).
DECODER, STATE, LINEAR = "decoder.safetensors", "state.safetensors", "linear.safetensors"
#: A timm layer with BatchNorm; building it downloads nothing with ``weights=none``.
TIMM_LAYER = "timm:resnet18:layer1"


# ----------------------------------------------------------------------------------------------------------- helpers
def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _one_line_error(result: Any, *fragments: str, progress: str | None = None) -> str:
    """Assert the CLI failed with exit status 1 and one ``Error:`` line holding every fragment; return the line.

    ``progress``: the start of progress lines the command may print before it fails (not part of the error).
    """
    lines = [line for line in result.output.splitlines()
             if line.strip() and not (progress and line.startswith(progress))]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _one_line(error: BaseException, *fragments: str) -> str:
    """Assert a library error's message is one line holding every fragment; return it."""
    message = str(error)
    assert message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) → the SHA-256 of its bytes."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy(run: Path, tmp_path: Path, name: str = "run") -> Path:
    """A private copy of a module-wide run (cases damage their copy, never the original)."""
    return Path(shutil.copytree(run, tmp_path / name))


def _rewrite_metadata(path: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    """Rewrite a safetensors file's ``repinv`` metadata: ``edit`` gets the parsed metadata and returns the new value
    (a dict is written as JSON, a string as it is)."""
    tensors = load_file(path)
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    value = edit(json.loads(header["repinv"]))
    save_file(tensors, str(path), metadata={"repinv": value if isinstance(value, str) else json.dumps(value)})


def _edit_header(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit a safetensors file's JSON header in place (tensor shapes, dtypes, offsets), keeping its data bytes."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    edit(header)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + length:])


def _wait_for_line(process: subprocess.Popen[str], expected: str, timeout: float = 120) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.strip() == expected:
            return
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"the child process never printed {expected!r} (exit status {process.poll()})")


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    """A Python child process running ``code`` with ``args`` (in ``sys.argv[1:]``), stdin and stdout piped."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                                              os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=environment, cwd=REPO)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=60)


# ---------------------------------------------------------------------------------------------------------- fixtures
def _train(out: Path, rep: str, size: int) -> Path:
    result = _invoke("train", "--rep", rep, "--data", "builtin", "--image-size", str(size), "--width", "0.05",
                     "--steps", "1", "--workers", "0", "--quiet", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny runs: ``hog`` and ``lbp`` decoders at 16x16, a ``hog`` decoder at 24x24, a ``hog`` linear baseline."""
    root = tmp_path_factory.mktemp("runs")
    made = {"hog": _train(root / "hog", "hog", 16), "lbp": _train(root / "lbp", "lbp", 16),
            "hog24": _train(root / "hog24", "hog", 24)}
    result = _invoke("fit-linear", "--rep", "hog", "--data", "builtin", "--image-size", "16", "--workers", "0",
                     "--out", str(root / "linear"))
    assert result.exit_code == 0, result.output
    return {**made, "linear": root / "linear"}


@pytest.fixture(scope="module")
def pristine_cache(tmp_path_factory: pytest.TempPathFactory, photo_folder: Path) -> Path:
    """A finished hog cache of the twelve test photos at 32x32, in three shards (5, 5 and 2 images)."""
    out = tmp_path_factory.mktemp("caches") / "hog"
    cache_features("hog", str(photo_folder), out, image_size=32, shard_size=5, workers=0, show_progress=False)
    return out


def _features_args(photo_folder: Path, out: Path) -> list[str]:
    """``repinv features`` arguments that make (or continue) ``pristine_cache``'s cache in ``out``."""
    return ["features", "--rep", "hog", "--data", str(photo_folder), "--image-size", "32", "--shard-size", "5",
            "--workers", "0", "--out", str(out)]


def _same_items(a: FeatureCache, b: FeatureCache) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for i in range(len(a)) for x, y in zip(a[i], b[i]))


# ------------------------------------------------------------------------------------------- weights that run code
class _Payload:
    """Unpickling this creates ``marker``: what a malicious checkpoint does (here harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return open, (str(self.marker), "w")


def _malicious(path: Path, marker: Path, kind: str) -> Path:
    """A ``.pth`` whose unpickling would create ``marker``: torch's zip format, or a bare pickle."""
    state = {"conv1.weight": torch.zeros(1), "payload": _Payload(marker)}
    if kind == "zip":
        torch.save(state, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(state, handle, protocol=2)
    return path


@pytest.mark.parametrize("kind", ["zip", "bare-pickle"])
def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path, kind):
    # The file really is hostile: loading it the unsafe way creates its marker.
    control = tmp_path / "control-marker"
    unsafe = _malicious(tmp_path / "control.pth", control, kind)
    if kind == "zip":
        torch.load(unsafe, weights_only=False)
    else:
        with open(unsafe, "rb") as handle:
            pickle.load(handle)
    assert control.exists()

    marker = tmp_path / "marker"
    evil = _malicious(tmp_path / "evil.pth", marker, kind)
    before = _digest(evil)
    representation = repinv.create_representation(TIMM_LAYER, weights=str(evil))
    with pytest.raises(InvalidOption) as caught:
        representation.load_weights()
    _one_line(caught.value, "evil.pth", "cannot read")
    assert not marker.exists()
    assert _digest(evil) == before

    # Through the CLI: one line, no marker, and no half-made cache left behind.
    out = tmp_path / "cache"
    result = _invoke("features", "--rep", TIMM_LAYER, "--rep-opt", f"weights={evil}", "--data", "builtin",
                     "--image-size", "16", "--workers", "0", "--out", str(out))
    _one_line_error(result, "evil.pth")
    assert not marker.exists() and not out.exists()
    assert _digest(evil) == before


# ------------------------------------------------------------------------------ local weights without BN counters
def _timm_state() -> tuple[Any, dict[str, torch.Tensor]]:
    source = repinv.create_representation(TIMM_LAYER, weights="none").eval()
    return source, {k: v.clone() for k, v in source.model.state_dict().items()}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_without_batchnorm_counters_load(tmp_path, suffix):
    source, state = _timm_state()
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    assert counters, "resnet18 has BatchNorm layers"
    converted = {k: v.contiguous() for k, v in state.items() if k not in counters}  # as converted checkpoints are
    path = tmp_path / f"converted{suffix}"
    if suffix == ".pth":
        torch.save(converted, path)
    else:
        save_file(converted, str(path))
    before = _digest(path)

    loaded = repinv.create_representation(TIMM_LAYER, weights=str(path)).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), source(images), rtol=0, atol=0)
    own = loaded.model.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in state)  # weights from the file, counters the model's own
    assert _digest(path) == before


@pytest.mark.parametrize("damage, named", [
    ("drop conv1.weight", "missing keys conv1.weight"),
    ("drop layer1.0.bn1.running_mean", "missing keys layer1.0.bn1.running_mean"),  # a statistic, not a counter
    ("reshape layer1.0.conv1.weight", "wrong shapes layer1.0.conv1.weight"),
])
def test_local_weights_missing_a_real_weight_are_refused_naming_it(tmp_path, damage, named):
    _, state = _timm_state()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    action, key = damage.split(" ")
    if action == "drop":
        del state[key]
    else:
        state[key] = state[key][:1]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    before = _digest(path)
    with pytest.raises(InvalidOption) as caught:
        repinv.create_representation(TIMM_LAYER, weights=str(path)).load_weights()
    message = _one_line(caught.value, named, "broken.pth")
    assert "num_batches_tracked" not in message  # counters are never reported as missing
    assert _digest(path) == before


# -------------------------------------------------------------------------------------------- damaged decoder files
@pytest.mark.parametrize("keep", ["nothing", "7 bytes", "100 bytes", "half", "all but 1 byte"])
def test_a_truncated_decoder_is_refused_in_one_line(runs, tmp_path, keep):
    run = _copy(runs["hog"], tmp_path)
    decoder = run / DECODER
    size = decoder.stat().st_size
    cut = {"nothing": 0, "7 bytes": 7, "100 bytes": 100, "half": size // 2, "all but 1 byte": size - 1}[keep]
    decoder.write_bytes(decoder.read_bytes()[:cut])
    before = _snapshot(run)
    with pytest.raises(CheckpointError) as caught:
        repinv.load_decoder(run, device="cpu")
    _one_line(caught.value, str(decoder))
    _one_line_error(_invoke("evaluate", "--checkpoint", str(run), "--workers", "0", "--device", "cpu"), DECODER)
    assert _snapshot(run) == before  # nothing written (no evaluation.json), nothing changed


def test_a_decoder_with_a_tensor_of_another_shape_is_refused_naming_it(runs, tmp_path):
    run = _copy(runs["hog"], tmp_path)
    decoder = run / DECODER
    tensors = load_file(decoder)
    key = next(k for k, v in tensors.items() if v.dim() >= 2)
    tensors[key] = torch.cat([tensors[key], tensors[key]])  # a valid file, one tensor twice as long
    with safe_open(str(decoder), framework="pt") as handle:
        metadata = handle.metadata()
    save_file(tensors, str(decoder), metadata=metadata)
    before = _snapshot(run)
    with pytest.raises(CheckpointError) as caught:
        repinv.load_decoder(run, device="cpu")
    _one_line(caught.value, "shape mismatch", key)
    assert _snapshot(run) == before


@pytest.mark.parametrize("edit, fragment", [
    ("swap", "shape mismatch"),  # the same bytes read as another shape: a valid file that does not fit
    ("grow", "not a readable safetensors file"),  # a shape the stored bytes cannot hold
])
def test_a_decoder_whose_header_shapes_were_edited_is_refused(runs, tmp_path, edit, fragment):
    run = _copy(runs["hog"], tmp_path)
    decoder = run / DECODER
    tensors = load_file(decoder)
    key = next(k for k, v in tensors.items() if v.dim() >= 2 and v.shape[0] != v.shape[1])

    def change(header: dict[str, Any]) -> None:
        shape = header[key]["shape"]
        header[key]["shape"] = [shape[1], shape[0], *shape[2:]] if edit == "swap" else [shape[0] + 1, *shape[1:]]

    _edit_header(decoder, change)
    before = _snapshot(run)
    with pytest.raises(CheckpointError) as caught:
        repinv.load_decoder(run, device="cpu")
    _one_line(caught.value, fragment, key if edit == "swap" else DECODER)
    assert _snapshot(run) == before


@pytest.mark.parametrize("metadata, fragment", [
    ("{not json", "not JSON"),
    ('{"representation": ', "not JSON"),  # cut short
    ("[1, 2, 3]", "a JSON list, not an object"),
    ('"hog"', "a JSON str, not an object"),
])
def test_a_decoder_whose_metadata_is_not_a_json_object_is_refused(runs, tmp_path, metadata, fragment):
    run = _copy(runs["hog"], tmp_path)
    _rewrite_metadata(run / DECODER, lambda _: metadata)
    before = _snapshot(run)
    with pytest.raises(CheckpointError) as caught:
        repinv.load_decoder(run, device="cpu")
    _one_line(caught.value, DECODER, "damaged repinv metadata", fragment)
    _one_line_error(_invoke("evaluate", "--checkpoint", str(run), "--workers", "0", "--device", "cpu"),
                    "damaged repinv metadata")
    assert _snapshot(run) == before


# ------------------------------------------------------------------------- a run used where another is expected
def test_compare_refuses_runs_of_different_representations_naming_both(runs, tmp_path):
    before = {name: _snapshot(run) for name, run in runs.items()}
    out = tmp_path / "compare"
    result = _invoke("compare", "--data", "builtin:test", "--method", f"decoder:{runs['hog']}", "--method",
                     f"decoder:{runs['lbp']}", "--workers", "0", "--device", "cpu", "--out", str(out))
    _one_line_error(result, f"decoder:{runs['hog']}", f"decoder:{runs['lbp']}", "hog", "lbp",
                    "compare one representation")
    assert not out.exists()
    assert {name: _snapshot(run) for name, run in runs.items()} == before


def test_compare_refuses_runs_of_different_image_sizes(runs, tmp_path):
    before = {name: _snapshot(run) for name, run in runs.items()}
    result = _invoke("compare", "--data", "builtin:test", "--method", f"decoder:{runs['hog']}", "--method",
                     f"decoder:{runs['hog24']}", "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "c"))
    _one_line_error(result, f"decoder:{runs['hog24']}", "24x24", "16x16")
    assert {name: _snapshot(run) for name, run in runs.items()} == before


def test_a_linear_baseline_where_a_decoder_is_expected_is_refused(runs):
    before = _snapshot(runs["linear"])
    with pytest.raises(CheckpointError) as caught:
        repinv.load_decoder(runs["linear"], device="cpu")
    _one_line(caught.value, "decoder")
    _one_line_error(_invoke("evaluate", "--checkpoint", str(runs["linear"]), "--workers", "0", "--device", "cpu"),
                    "decoder")
    assert _snapshot(runs["linear"]) == before


# ---------------------------------------------------------------------------------------------- the run format
def _future(metadata: dict[str, Any]) -> dict[str, Any]:
    return {**metadata, "run_format": RunDir.FORMAT + 1}


def test_a_run_from_a_newer_repinv_is_refused_naming_both_formats(runs, tmp_path):
    run = _copy(runs["hog"], tmp_path)
    _rewrite_metadata(run / DECODER, _future)
    before = _snapshot(run)
    versions = (f"run format {RunDir.FORMAT + 1}", f"reads up to {RunDir.FORMAT}", "upgrade repinv")
    for read in (RunDir(run).metadata, RunDir(run).identity, lambda: repinv.load_decoder(run, device="cpu")):
        with pytest.raises(CheckpointError) as caught:
            read()
        _one_line(caught.value, str(run), "newer repinv", *versions)
    _one_line_error(_invoke("evaluate", "--checkpoint", str(run), "--workers", "0", "--device", "cpu"), *versions)
    assert _snapshot(run) == before


def test_a_resume_state_from_a_newer_repinv_is_refused(runs, tmp_path):
    run = _copy(runs["hog"], tmp_path)
    _rewrite_metadata(run / STATE, _future)
    before = _snapshot(run)
    versions = (f"run format {RunDir.FORMAT + 1}", f"reads up to {RunDir.FORMAT}")
    for read in (RunDir(run).read_state, RunDir(run).training_settings):
        with pytest.raises(CheckpointError) as caught:
            read()
        _one_line(caught.value, *versions)
    _one_line_error(_invoke("train", "--resume", str(run), "--steps", "2", "--workers", "0", "--quiet"), *versions)
    assert _snapshot(run) == before


def test_a_linear_baseline_from_a_newer_repinv_is_refused(runs, tmp_path):
    run = _copy(runs["linear"], tmp_path)
    assert RunDir(run).metadata()["run_format"] == RunDir.FORMAT  # fit-linear writes the number
    _rewrite_metadata(run / LINEAR, _future)
    before = _snapshot(run)
    with pytest.raises(CheckpointError) as caught:
        load_linear(run, device="cpu")
    _one_line(caught.value, f"run format {RunDir.FORMAT + 1}", f"reads up to {RunDir.FORMAT}")
    assert _snapshot(run) == before


@pytest.mark.parametrize("value", ["2", 1.5, True, 0, None])
def test_a_run_format_that_is_not_a_number_is_refused(runs, tmp_path, value):
    run = _copy(runs["hog"], tmp_path)
    _rewrite_metadata(run / DECODER, lambda meta: {**meta, "run_format": value})
    with pytest.raises(CheckpointError) as caught:
        RunDir(run).metadata()
    _one_line(caught.value, "not a format number", DECODER)


def test_a_run_without_a_format_number_is_read_as_format_1(runs, tmp_path):
    run = _copy(runs["hog"], tmp_path)
    _rewrite_metadata(run / DECODER, lambda meta: {k: v for k, v in meta.items() if k != "run_format"})
    _rewrite_metadata(run / STATE, lambda meta: {k: v for k, v in meta.items() if k != "run_format"})
    assert "run_format" not in RunDir(run).metadata()
    inverter = repinv.load_decoder(run, device="cpu")
    assert inverter.decode(torch.zeros(1, *inverter.spec.shape)).shape == (1, 3, 16, 16)
    assert RunDir(run).training_settings()["rep"] == "hog"
    linear = _copy(runs["linear"], tmp_path, "linear")
    _rewrite_metadata(linear / LINEAR, lambda meta: {k: v for k, v in meta.items() if k != "run_format"})
    assert load_linear(linear, device="cpu").image_size == (16, 16)


# ------------------------------------------------------------------------------------------- one run, one trainer
_HOLD_RUN = """
import sys
from repinv.rundir import RunDir
with RunDir(sys.argv[1]).lock():
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


def test_a_second_lock_in_this_process_is_refused_until_the_first_ends(runs, tmp_path):
    run = _copy(runs["hog"], tmp_path)
    before = _snapshot(run)
    with RunDir(run).lock() as held:
        assert held.path == run
        with pytest.raises(CheckpointError) as caught, RunDir(run).lock():
            pytest.fail("two holders of one run")
        _one_line(caught.value, str(run), "is being trained by another repinv process", f"pid {os.getpid()}",
                  "wait for it or stop it")
    with RunDir(run).lock():
        pass
    after = _snapshot(run)
    assert {k: v for k, v in after.items() if k != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}


def test_a_lock_creates_its_run_directory(tmp_path):
    with RunDir(tmp_path / "new" / "run").lock():
        assert (tmp_path / "new" / "run").is_dir()


def test_a_run_path_that_is_a_file_cannot_be_locked(tmp_path):
    taken = tmp_path / "run"
    taken.write_text("the user's notes\n")
    with pytest.raises(CheckpointError) as caught, RunDir(taken).lock():
        pytest.fail("locked a file")
    _one_line(caught.value, "cannot write in run directory", str(taken))
    assert taken.read_text() == "the user's notes\n"


def test_a_file_system_without_locks_trains_unprotected_with_a_warning(tmp_path, monkeypatch):
    def no_locks(_handle: int, _operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    entered = []
    with pytest.warns(UserWarning, match="cannot lock .*nothing stops a second process"), RunDir(tmp_path).lock():
        entered.append(True)
    assert entered == [True]


@pytest.mark.parametrize("ending", ["exit", "SIGKILL"])
def test_a_run_locked_by_another_process_is_refused_and_freed_when_it_ends(runs, tmp_path, ending):
    run = _copy(runs["hog"], tmp_path)
    before = _snapshot(run)
    holder = _child(_HOLD_RUN, str(run))
    try:
        _wait_for_line(holder, "held")
        with pytest.raises(CheckpointError) as caught, RunDir(run).lock():
            pytest.fail("two holders of one run")
        _one_line(caught.value, str(run), "is being trained by another repinv process", f"(pid {holder.pid})",
                  "wait for it or stop it")
        if ending == "exit":
            assert holder.stdin is not None
            holder.stdin.write("\n")
            holder.stdin.flush()
            _wait_for_line(holder, "released")
            assert holder.wait(timeout=60) == 0
        else:
            os.kill(holder.pid, signal.SIGKILL)
            assert holder.wait(timeout=60) == -signal.SIGKILL
    finally:
        _stop(holder)
    with RunDir(run).lock():  # a killed trainer never leaves a stale lock: its run can be resumed at once
        pass
    after = _snapshot(run)
    assert {k: v for k, v in after.items() if k != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}


# ------------------------------------------------------------------------------------------------ feature caches
def test_a_truncated_cache_shard_is_named_and_recomputed_alone(pristine_cache, photo_folder, tmp_path):
    out = _copy(pristine_cache, tmp_path, "cache")
    shard = out / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:shard.stat().st_size // 2])
    before = _snapshot(out)
    with pytest.raises(CacheError) as caught:
        FeatureCache(out)
    _one_line(caught.value, str(shard), "damaged", "delete it and run `repinv features` again",
              "recomputes only the missing shards")
    # `repinv features` again, before the advice is followed: the same line, nothing changed.
    _one_line_error(_invoke(*_features_args(photo_folder, out)), str(shard), "delete it", progress="features hog:")
    _one_line_error(_invoke("train", "--features", str(out), "--steps", "1", "--width", "0.05", "--workers", "0",
                            "--quiet", "--out", str(tmp_path / "run")), str(shard))
    assert _snapshot(out) == before
    # Following the advice recomputes that shard alone and gives the cache back.
    shard.unlink()
    assert _invoke(*_features_args(photo_folder, out)).exit_code == 0
    after = _snapshot(out)
    assert all(after[name] == digest for name, digest in before.items() if name != shard.name)
    assert _same_items(FeatureCache(out), FeatureCache(pristine_cache))


def _edit_json(text: str, **changes: Any) -> str:
    return json.dumps({**json.loads(text), **changes}, indent=2)


#: Hand edits of a cache.json of 12 hog images at 32x32 (feature maps 31x4x4) in shards of 5, and what is named.
MANIFEST_EDITS: dict[str, tuple[Callable[[str], str], tuple[str, ...]]] = {
    "cut in half": (lambda text: text[:len(text) // 2], ("not readable JSON",)),
    "not an object": (lambda text: "[]", ("a JSON list, not an object",)),
    "count removed": (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "count"}),
                      ("count must be a positive integer",)),
    "count a string": (lambda text: _edit_json(text, count="12"), ("count must be a positive integer",)),
    "count 11": (lambda text: _edit_json(text, count=11), ("shard-00002.safetensors", "images 10 to 11",
                                                           "images 10 to 10")),
    "count 10": (lambda text: _edit_json(text, count=10), ("holds shards", "shard-00002.safetensors")),
    "count 14": (lambda text: _edit_json(text, count=14), ("shard-00002.safetensors", "images 10 to 13")),
    "count 20": (lambda text: _edit_json(text, count=20), ("shard-00002.safetensors", "images 10 to 14")),
    "shard_size 6": (lambda text: _edit_json(text, shard_size=6), ("shard-00000.safetensors", "images 0 to 5")),
    "feature_shape, same cells": (lambda text: _edit_json(text, feature_shape=[31, 2, 8]),
                                  ("feature_shape [31, 2, 8]", "hog {", "gives [31, 4, 4]")),
    "feature_shape, other channels": (lambda text: _edit_json(text, feature_shape=[30, 4, 4]),
                                      ("shard-00000.safetensors", "30 channels")),
    "feature_shape of two numbers": (lambda text: _edit_json(text, feature_shape=[31, 16]),
                                     ("feature_shape must be one or three",)),
    "image_size": (lambda text: _edit_json(text, image_size=[40, 40]), ("shard-00000.safetensors", "3x40x40")),
    "representation options": (lambda text: _edit_json(text, representation={"name": "hog",
                                                                             "options": {"cell_size": 4}}),
                               ("'cell_size': 4", "gives [31, 8, 8]")),
    "format": (lambda text: _edit_json(text, format=2), ("cache format 2",)),
}


def _edited_cache(pristine: Path, tmp_path: Path, edit: str) -> tuple[Path, tuple[str, ...], dict[str, str]]:
    """A copy of the pristine cache with one MANIFEST_EDITS edit applied: its folder, the fragments the refusal must
    name, and a snapshot of its files before anything reads it."""
    out = _copy(pristine, tmp_path, "cache")
    change, fragments = MANIFEST_EDITS[edit]
    manifest = out / "cache.json"
    manifest.write_text(change(manifest.read_text()))
    return out, tuple(fragments), _snapshot(out)


@pytest.mark.parametrize("edit", list(MANIFEST_EDITS))
def test_an_edited_cache_manifest_is_refused_in_one_line(pristine_cache, tmp_path, edit):
    out, fragments, before = _edited_cache(pristine_cache, tmp_path, edit)
    with pytest.raises(CacheError) as caught:
        FeatureCache(out)
    _one_line(caught.value, *fragments)
    assert _snapshot(out) == before


@pytest.mark.parametrize("edit", ["cut in half", "count 11", "feature_shape, same cells"])
def test_training_from_an_edited_cache_is_refused_through_the_cli(pristine_cache, tmp_path, edit):
    out, fragments, before = _edited_cache(pristine_cache, tmp_path, edit)
    _one_line_error(_invoke("train", "--features", str(out), "--steps", "1", "--width", "0.05", "--workers", "0",
                            "--quiet", "--out", str(tmp_path / "run")), *fragments)
    assert _snapshot(out) == before


#: Writes a cache of hog features that stalls after its first shard (shard_size 5), until killed.
_STALLING_WRITER = """
import sys, time
from pathlib import Path
from repinv import FeatureSpec, Representation, create_representation
from repinv.data.cache import cache_features

out = Path(sys.argv[2])

class StallingHog(Representation):
    name = "hog"  # the same manifest as `repinv features --rep hog`
    differentiable = False

    def __init__(self):
        super().__init__()
        self.hog = create_representation("hog")

    def forward(self, images):
        if (out / "shard-00000.safetensors").exists():
            print("stalled", flush=True)
            time.sleep(600)
        return self.hog(images)

    def spec(self, image_size):
        return self.hog.spec(image_size)

    def config(self):
        return self.hog.config()

cache_features(StallingHog(), sys.argv[1], out, image_size=32, shard_size=5, workers=0, show_progress=False)
"""


def test_a_second_cache_writer_is_refused_and_a_killed_one_is_continued(pristine_cache, photo_folder, tmp_path):
    out = tmp_path / "cache"
    writer = _child(_STALLING_WRITER, str(photo_folder), str(out))
    try:
        _wait_for_line(writer, "stalled")
        before = _snapshot(out)
        assert "shard-00000.safetensors" in before and "shard-00001.safetensors" not in before
        _one_line_error(_invoke(*_features_args(photo_folder, out)), str(out),
                        "is being written by another `repinv features` process", f"(pid {writer.pid})",
                        "wait for it or stop it")
        with pytest.raises(CacheError, match=f"pid {writer.pid}"):
            cache_features("hog", str(photo_folder), out, image_size=32, shard_size=5, workers=0, show_progress=False)
        assert _snapshot(out) == before
        os.kill(writer.pid, signal.SIGKILL)
        assert writer.wait(timeout=60) == -signal.SIGKILL
    finally:
        _stop(writer)
    # The kill freed the lock: the same command continues the cache, keeping the finished shard as it was.
    result = _invoke(*_features_args(photo_folder, out))
    assert result.exit_code == 0, result.output
    assert _snapshot(out)["shard-00000.safetensors"] == before["shard-00000.safetensors"]
    assert _same_items(FeatureCache(out), FeatureCache(pristine_cache))
