"""A faster training step: torch.compile (a failed compilation falls back to eager with one line; a real one trains
like eager) and bfloat16 autocast (where the device runs it natively, or where asked)."""

from __future__ import annotations

import io
import shutil

import pytest
import torch
from torch import nn

from repinv import utils
from repinv.errors import InvalidOption
from repinv.training import compiling
from repinv.training.compiling import CompiledOrEager, CompileWarning
from repinv.training.config import make_config
from repinv.training.loop import resume, train
from repinv.utils import fast_bfloat16


def _failing_compile(module: nn.Module) -> object:
    def compiled(*args: object, **kwargs: object) -> object:
        raise RuntimeError("InductorError: CppCompileError: C++ compile error\nno compiler found\ncommand: g++ ...")
    return compiled


def test_a_failed_compilation_warns_once_in_one_line_and_runs_the_module_eagerly(monkeypatch):
    monkeypatch.setattr(compiling.torch, "compile", _failing_compile)
    layer = nn.Linear(3, 2)
    wrapped = CompiledOrEager(layer)
    x = torch.randn(4, 3)
    with pytest.warns(CompileWarning) as caught:
        first = wrapped(x)
    second = wrapped(x)  # no second attempt, no second warning
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert "RuntimeError: InductorError: CppCompileError: C++ compile error" in str(caught[0].message)
    assert not wrapped.compiled
    assert torch.equal(first, layer(x)) and torch.equal(second, layer(x))


def test_an_error_of_the_inputs_still_raises_after_the_fallback(monkeypatch):
    monkeypatch.setattr(compiling.torch, "compile", _failing_compile)
    wrapped = CompiledOrEager(nn.Linear(3, 2))
    with pytest.warns(CompileWarning), pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        wrapped(torch.randn(4, 5))


def test_training_with_compile_falls_back_and_finishes(photo_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(compiling.torch, "compile", _failing_compile)
    config = make_config(rep="hog", image_size=32, width=0.05, steps=2, batch_size=4, workers=0,
                         data=[str(photo_folder)], device="cpu", compile=True)
    with pytest.warns(CompileWarning, match="training without it"):
        result = train(config, tmp_path / "run", show_progress=False)
    assert result.step == 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on a CPU needs a C++ compiler; none on PATH")
def test_compiled_training_matches_eager_training(photo_folder, tmp_path):
    settings = dict(rep="hog", image_size=32, width=0.1, steps=3, batch_size=4, workers=0, data=[str(photo_folder)],
                    device="cpu", decoder="residual", decoder_options={"blocks": 1})
    eager = train(make_config(**settings), tmp_path / "eager", show_progress=False)
    compiled = train(make_config(**settings, compile=True), tmp_path / "compiled", show_progress=False)
    # the same steps, up to the order of floating-point sums in fused kernels
    assert compiled.loss == pytest.approx(eager.loss, rel=1e-3)


@pytest.mark.parametrize(("flags", "expected"), [("fpu avx2 avx512f avx512_bf16 sse", True),
                                                 ("fpu avx2 amx_tile amx_bf16", True),
                                                 ("fpu avx2 avx512f avx512bw", False)])
def test_bfloat16_counts_as_fast_on_cpus_with_bfloat16_instructions(monkeypatch, flags: str, expected: bool) -> None:
    cpuinfo = f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n"
    monkeypatch.setattr(utils, "open", lambda *args, **kwargs: io.StringIO(cpuinfo), raising=False)
    assert fast_bfloat16(torch.device("cpu")) is expected
    assert fast_bfloat16(torch.device("cuda")) is True
    assert fast_bfloat16(torch.device("meta")) is False


def test_without_cpuinfo_a_cpu_is_not_assumed_fast(monkeypatch) -> None:
    def missing(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("/proc/cpuinfo")
    monkeypatch.setattr(utils, "open", missing, raising=False)
    assert fast_bfloat16(torch.device("cpu")) is False


def test_mixed_precision_runs_the_decoder_in_bfloat16_on_a_cpu(photo_folder, tmp_path) -> None:
    settings = dict(rep="hog", image_size=32, width=0.05, steps=2, batch_size=4, workers=0, data=[str(photo_folder)],
                    device="cpu", log_every=1)
    full = train(make_config(**settings, mixed_precision="none"), tmp_path / "full", show_progress=False)
    mixed = train(make_config(**settings, mixed_precision="all"), tmp_path / "mixed", show_progress=False)
    # the same run up to bfloat16 rounding: close, but not equal
    assert mixed.loss == pytest.approx(full.loss, rel=0.05) and mixed.loss != full.loss


def test_mixed_precision_is_validated_and_may_change_on_resume(photo_folder, tmp_path) -> None:
    with pytest.raises(InvalidOption, match="mixed_precision"):
        make_config(mixed_precision="fp16")
    settings = dict(rep="hog", image_size=32, width=0.05, steps=2, batch_size=4, workers=0, data=[str(photo_folder)],
                    device="cpu")
    train(make_config(**settings), tmp_path / "run", show_progress=False)
    result = resume(tmp_path / "run", steps=3, mixed_precision="all", compile=False, show_progress=False)
    assert result.step == 3
