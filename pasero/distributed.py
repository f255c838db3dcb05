"""Data parallelism across processes and nodes: who am I, and the few collectives training needs.

The process group is set up from the environment of whatever started the processes: torchrun
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or SLURM's `srun` (SLURM_PROCID,
SLURM_NTASKS, SLURM_LOCALID; the master is the first host of SLURM_JOB_NODELIST). gloo is used on
CPU, NCCL on CUDA. Only rank 0 writes files (checkpoints, logs); every rank reads.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_master(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def first_host(nodelist: str) -> str:
    """First host name of a SLURM node list: 'gpu[07-09,12],cpu1' -> 'gpu07'.

    `scontrol show hostnames` is the reference; this parser covers it when scontrol is absent.
    """
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             timeout=30, check=True).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    first = re.match(r"[^,\[]*(\[[^\]]*\])?[^,]*", nodelist.strip()).group(0)
    m = re.match(r"([^\[]*)\[([^\]]*)\](.*)", first)
    if not m:
        return first
    prefix, ranges, suffix = m.groups()
    start = ranges.split(",")[0].split("-")[0]  # zero padding kept: 'gpu[07-09]' -> 'gpu07'
    return f"{prefix}{start}{suffix}"


def env_info(environ: dict[str, str] | None = None) -> DistInfo:
    """Rank and world size from torchrun's or SLURM's variables (single process when neither)."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return DistInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    if tasks and int(tasks) > 1 and "SLURM_PROCID" in env:
        return DistInfo(int(env["SLURM_PROCID"]), int(tasks), int(env.get("SLURM_LOCALID", 0)))
    return DistInfo()


def init(device_type: str) -> DistInfo:
    """Join the process group if several processes were started; returns this process's place."""
    info = env_info()
    if not info.enabled or dist.is_initialized():
        return info
    if "SLURM_PROCID" in os.environ and "RANK" not in os.environ:
        os.environ.setdefault("MASTER_ADDR", first_host(os.environ.get("SLURM_JOB_NODELIST", "localhost")))
        os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000))
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", init_method="env://",
                            rank=info.rank, world_size=info.world_size)
    return info


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over processes (a no-op in a single process)."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s object on every rank (e.g. validation scores computed on rank 0 only)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
