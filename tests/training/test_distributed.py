"""Training on several processes: torchrun, DistributedDataParallel over gloo on the CPU, one run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import repinv
from repinv.data.stream import PositionSampler
from repinv.errors import InvalidOption
from repinv.files import load_tensors
from repinv.training.distributed import Processes

RECIPE = """
rep = "hog"
image_size = 32
batch_size = 4
width = 0.05
workers = 0
device = "cpu"
log_every = 1
sample_every = 3
checkpoint_every = 3
"""


def test_ranks_take_disjoint_shares_of_each_global_batch() -> None:
    size, world, batch, start = 10, 2, 4, 6
    streams = [PositionSampler(size, seed=3, start=start, rank=rank, world=world) for rank in range(world)]
    taken = [[next(iterator) for _ in range(batch // world * 3)] for iterator in map(iter, streams)]
    single = iter(PositionSampler(size, seed=3, start=start))
    for step in range(3):
        shares = [set(t[step * 2:step * 2 + 2]) for t in taken]
        assert not shares[0] & shares[1]
        assert shares[0] | shares[1] == {next(single) for _ in range(batch)}


def test_global_batch_must_divide_by_the_processes() -> None:
    assert Processes(rank=1, world=4).local_batch(16) == 4
    with pytest.raises(InvalidOption, match="--batch-size 6 .* must divide by 4"):
        Processes(rank=0, world=4).local_batch(6)


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "repinv", "train", *args, "--quiet"]
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_with_the_same_global_batch(photo_folder: Path,
                                                                            tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    run = tmp_path / "ddp"
    result = _torchrun(["--recipe", str(recipe), "--data", str(photo_folder), "--steps", "3", "--out", str(run)],
                       tmp_path)
    assert result.stdout.count("done") == 1  # rank 0 reports, rank 1 stays quiet
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]  # one process writes the log
    assert json.loads((run / "state.json").read_text())["step"] == 3

    single = repinv.train(repinv.make_config(str(recipe), data=[str(photo_folder)], steps=3), tmp_path / "single",
                          show_progress=False)
    assert single.step == 3
    ddp, one = load_tensors(run / "decoder.safetensors"), load_tensors(tmp_path / "single" / "decoder.safetensors")
    assert ddp.keys() == one.keys()
    for key in one:
        torch.testing.assert_close(ddp[key], one[key], atol=1e-5, rtol=1e-4)  # the same data, averaged gradients

    _torchrun(["--resume", str(run), "--steps", "5"], tmp_path)
    assert json.loads((run / "state.json").read_text())["step"] == 5
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5]
