"""Data-parallel training on PyTorch's own engine: process groups set up from ``torchrun``.

``torchrun`` starts one process per device and sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE`` (plus the rendezvous address). :func:`init_distributed` joins the process group
it describes: NCCL when the run trains on CUDA (one GPU per local rank), gloo on the CPU.
Without those variables it returns a one-process :class:`Distributed` and nothing is
initialised, so the same trainer code runs alone or under ``torchrun``.
"""

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from multimodal_s2s.data.batching import Shard
from multimodal_s2s.errors import InputError


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: ``rank`` of ``world`` processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def shard(self) -> Shard:
        """This process's share of every epoch's data."""
        return Shard(self.rank, self.world)

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and progress bars."""
        return self.rank == 0

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` summed over all ranks (the same tensor, in place; no host sync on CUDA)."""
        if self.enabled:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def gather(self, value: Any) -> list[Any]:
        """Every rank's picklable ``value``, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast(self, value: Any) -> Any:
        """Rank 0's picklable ``value``, on every rank."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


SINGLE_PROCESS = Distributed()


def init_distributed(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the process group ``torchrun`` describes in the environment, if any.

    Args:
        device: the device the config asks for; under ``torchrun`` on CUDA each process
            takes GPU ``LOCAL_RANK`` instead.

    Returns:
        This process's :class:`Distributed` and the device it trains on.

    Raises:
        InputError: more local processes than GPUs, or malformed ``torchrun`` variables.
    """
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return SINGLE_PROCESS, device
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError) as error:
        raise InputError(f"torchrun environment is incomplete or malformed ({error})") from error
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise InputError(
                f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                "start at most one process per GPU"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world)
    return Distributed(rank, world, local_rank), device


def shutdown_distributed() -> None:
    """Leave the process group (a no-op when running alone)."""
    if dist.is_initialized():
        dist.destroy_process_group()
