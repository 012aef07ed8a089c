"""Training on several processes with PyTorch's own engine: ``torchrun`` starts them, DistributedDataParallel
keeps their decoders in step.

``torchrun --nproc-per-node N -m repinv train ...`` (or ``repinv train`` in any environment where torchrun's
variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` are set) makes every
process join one process group: NCCL when training on CUDA, gloo on the CPU. Without those variables training is a
single process and nothing here does anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from repinv.errors import InvalidOption

__all__ = ["Processes", "join", "leave", "agree", "average"]

_joined: list[bool] = []  # holds an entry while this process is in a group that join() started


@dataclass(frozen=True)
class Processes:
    """Where this process stands among the training processes."""

    rank: int = 0  # this process's number, 0 … world − 1
    world: int = 1  # how many processes train together
    local_rank: int = 0  # its number on this machine: the CUDA device it uses

    @property
    def main(self) -> bool:
        """Whether this process writes the run directory and shows progress (rank 0)."""
        return self.rank == 0

    def local_batch(self, batch_size: int) -> int:
        """Images per step in this process: the global ``batch_size`` split evenly over the processes.

        Raises:
            InvalidOption: ``batch_size`` does not divide by the number of processes.
        """
        if batch_size % self.world:
            raise InvalidOption(f"--batch-size {batch_size} is the batch of all {self.world} processes together and "
                                f"must divide by {self.world}; use a multiple of {self.world}")
        return batch_size // self.world

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.world > 1:
            dist.barrier()


def join(device: torch.device) -> tuple[Processes, torch.device]:
    """Join the process group torchrun's environment describes, once per process.

    Args:
        device: the device training asked for; with CUDA, each process takes the GPU of its local rank.

    Returns:
        This process's place, and the device it trains on.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes(), device
    processes = Processes(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", processes.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
        _joined.append(True)
    return processes, device


def leave() -> None:
    """Leave the process group, if :func:`join` made it (a caller's own group stays)."""
    if _joined and dist.is_initialized():
        dist.destroy_process_group()
    _joined.clear()


def agree(processes: Processes, values: list[float], device: torch.device) -> list[float]:
    """The element-wise largest of ``values`` over all processes, so that decisions taken from local clocks and
    signals (stop now, how far the time budget is spent) are the same everywhere.

    Shape:
        values: any number of floats; returns as many.
    """
    return _reduce(processes, values, device, dist.ReduceOp.MAX)


def average(processes: Processes, values: list[float], device: torch.device) -> list[float]:
    """The element-wise mean of ``values`` over all processes (e.g. their training losses, for the log)."""
    return [value / processes.world for value in _reduce(processes, values, device, dist.ReduceOp.SUM)]


def _reduce(processes: Processes, values: list[float], device: torch.device,
            op: dist.ReduceOp.RedOpType) -> list[float]:
    if processes.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=op)
    return [float(value) for value in tensor.tolist()]
