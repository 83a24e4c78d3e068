"""The process group and device of a training process, one code path for 1 or N processes.

Under torchrun the environment gives RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous; a process
started on its own forms a one-member group in memory (a HashStore), so FSDP2 and DCP run the
same way everywhere and a one-process run checks the same code as a cluster run.
Backend ``auto`` means NCCL when CUDA is present, else gloo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from loom_compute.config import RunConfig
from loom_compute.errors import ConfigError
from loom_compute.protocol import world_size


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    mesh: DeviceMesh

    @property
    def is_primary(self) -> bool:
        return self.rank == 0


def choose_backend(config: RunConfig) -> str:
    wanted = config.dist.backend
    if wanted == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if wanted == "nccl" and not torch.cuda.is_available():
        raise ConfigError("dist.backend is 'nccl' but this machine has no CUDA device: use 'gloo' or 'auto'", key="dist.backend")
    return wanted


def init_distributed(config: RunConfig, timeout_s: float = 1800.0) -> DistContext:
    """Joins (or forms) the process group and picks this process's device."""
    backend = choose_backend(config)
    world = world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        timeout = timedelta(seconds=timeout_s)
        if "MASTER_ADDR" in os.environ and world > 1 or "TORCHELASTIC_RUN_ID" in os.environ:
            dist.init_process_group(backend, timeout=timeout, device_id=device if backend == "nccl" else None)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),), mesh_dim_names=("dp",))
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=device, backend=backend, mesh=mesh)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sums a tensor over all ranks in place, without reading it on the host; returns it."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
