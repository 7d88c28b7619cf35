"""Data-parallel training under `torchrun`: process group set-up, parameter broadcast, gradient all-reduce.

No DDP wrappers (as StyleGAN3): after each phase's accumulation rounds every rank flattens the phase module's
gradients into one tensor, all-reduces it and divides by the world size. `torchrun` provides RANK, WORLD_SIZE,
LOCAL_RANK and the env:// rendezvous, so multi-node launches work the same way as single-node ones.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from stylegan_core.config import LoopConfig

TIMEOUT_ENV = "STYLEGAN_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = LoopConfig().dist_timeout_s
"""A dead or stuck peer fails the run after this long instead of hanging it ($STYLEGAN_DIST_TIMEOUT_S wins)."""


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job; `world_size == 1` means plain single-process training."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def default_device(local_rank: int = 0) -> torch.device:
    return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")


def init_distributed(device: torch.device | None = None, timeout_s: float | None = None) -> DistributedContext:
    """Join the torchrun job described by the environment, or return a single-process context without one.

    NCCL on CUDA, gloo on CPU; the timeout is $STYLEGAN_DIST_TIMEOUT_S if set, else `timeout_s`, else
    LoopConfig's default.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = device or default_device(local_rank)
    if world_size == 1:
        return DistributedContext(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # The option wins; the environment is only a fallback (worker.run_training records it in the options).
        timeout = timeout_s if timeout_s is not None else float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            init_method="env://",
            timeout=datetime.timedelta(seconds=timeout),
        )
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed(world: DistributedContext) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module, world: DistributedContext) -> None:
    """Give every rank rank 0's parameters and buffers (networks are built independently on each rank)."""
    if not world.distributed:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor, src=0)


def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter], world: DistributedContext) -> torch.Tensor | None:
    """Average the gradients over ranks in one collective; returns the flat averaged gradient (None if no grads).

    Every rank must reach this with the same set of gradients (the loss's `* 0` terms guarantee it).
    """
    params = [param for param in parameters if param.grad is not None and param.numel() > 0]
    if not params:
        return None
    flat = torch.cat([param.grad.flatten() for param in params])
    if world.distributed:
        dist.all_reduce(flat)
        flat /= world.world_size
        offset = 0
        for param in params:
            param.grad.copy_(flat[offset : offset + param.numel()].view_as(param.grad))
            offset += param.numel()
    return flat


def any_rank(flag: bool, world: DistributedContext, device: torch.device) -> bool:
    """True if `flag` is true on any rank (so every rank stops together, e.g. on abort)."""
    if not world.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value)
    return bool(value.item() > 0)


def broadcast_object(value: Any, world: DistributedContext) -> Any:
    """Rank 0's `value` on every rank (small picklable objects only)."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value: Any, world: DistributedContext) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    if not world.distributed:
        return [value]
    gathered: list[Any] = [None] * world.world_size
    dist.all_gather_object(gathered, value)
    return gathered
