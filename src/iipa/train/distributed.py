"""torchrun / DDP plumbing: one object that is a no-op in a single process.

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK; we then join the process group with
gloo on the CPU and NCCL on GPUs, pin each rank to its local GPU, and wrap the model in
DistributedDataParallel.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def active(self) -> bool:
        return self.world > 1

    def device(self, wanted: torch.device) -> torch.device:
        """Join the process group (if any) and return this rank's device."""
        if wanted.type == "cuda" and self.active:
            wanted = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(wanted)
        if self.active and not dist.is_initialized():
            dist.init_process_group("nccl" if wanted.type == "cuda" else "gloo")
        return wanted

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        if not self.active:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def barrier(self) -> None:
        if self.active and dist.is_initialized():
            dist.barrier()

    def gather_digest(self, model: nn.Module) -> list[str]:
        """SHA-256 of every rank's weights and buffers (equal digests: identical replicas)."""
        h = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):  # parameters and buffers
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        digest = h.hexdigest()
        if not self.active:
            return [digest]
        out: list[str] = [""] * self.world
        dist.all_gather_object(out, digest)
        return out

    def sync_buffers(self, model: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

        Parameters stay identical through DDP's gradient all-reduce, but each rank updates
        its running statistics with its own shard; DDP re-broadcasts them before every
        forward, we do it once more at the end so the replicas are identical bit for bit.
        """
        if self.active:
            for buf in model.buffers():
                dist.broadcast(buf.data, src=0)

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
