"""Checkpoint files: atomic writes, metadata, strict loading with clear mismatch messages, optimizer round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repinv.errors import CheckpointError
from repinv.files import (
    atomic_write,
    load_into,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    read_metadata,
    save_tensors,
)


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("old")

    def failing(temporary):
        temporary.write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, failing)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_atomic_write_gives_the_mode_a_plain_write_would(tmp_path):
    atomic_write(tmp_path / "atomic.txt", lambda p: p.write_text("x"))
    (tmp_path / "plain.txt").write_text("x")
    assert (tmp_path / "atomic.txt").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode


def test_metadata_round_trip_and_not_a_pickle(tmp_path):
    path = tmp_path / "t.safetensors"
    save_tensors(path, {"w": torch.ones(2)}, {"step": 3, "name": "hog"})
    assert read_metadata(path) == {"step": 3, "name": "hog"}
    assert torch.equal(load_tensors(path)["w"], torch.ones(2))
    assert path.read_bytes()[:2] != b"\x80\x02"  # pickle protocol header


def test_missing_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_metadata(tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_metadata(tmp_path / "junk.safetensors")
    save_tensors(tmp_path / "plain.safetensors", {"w": torch.ones(1)})
    with pytest.raises(CheckpointError, match="no repinv metadata"):
        read_metadata(tmp_path / "plain.safetensors")


def test_load_into_names_missing_unexpected_and_shape_differences():
    module = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    state = module.state_dict()
    state["0.weight"] = torch.zeros(5, 3)
    del state["1.bias"]
    state["2.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing 1\.bias.*unexpected 2\.weight.*0\.weight: saved \(5, 3\)"):
        load_into(module, state, "decoder")


def test_optimizer_state_round_trip(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
    tensors, saved = optimizer_to_tensors(optimizer)
    save_tensors(tmp_path / "s.safetensors", tensors, saved)
    fresh = torch.optim.Adam(model.parameters(), lr=0.5)
    optimizer_from_tensors(fresh, load_tensors(tmp_path / "s.safetensors"), read_metadata(tmp_path / "s.safetensors"))
    assert fresh.param_groups[0]["lr"] == 0.01
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(fresh.state[model.weight][key], optimizer.state[model.weight][key])
