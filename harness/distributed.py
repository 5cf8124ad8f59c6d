"""One run on several processes with DistributedDataParallel, started by ``torchrun``.

    torchrun --nproc_per_node 2 -m rootbench.harness bench --task cifar10-resnet --opt rfrmsprop

Every rank draws the same global batch (same seed, same order) and trains on its slice; DDP averages
the gradients, so the update is the one of a single process on the global batch. The root-free
methods therefore get B = the global batch: after the all-reduce their gradient is a mean over that
many examples, exactly as with gradient accumulation (B = k*b with k accumulated micro-batches of b). Only rank 0
writes results; the loss used for the divergence check and the curves is the all-reduced mean, so
all ranks stop at the same step.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> None:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA)."""
    if dist.is_initialized() or not launched_by_torchrun():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_device() -> torch.device:
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    rank, world = rank_and_world()
    if world == 1:
        return model
    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shard(x, y):
    """This rank's slice of a global batch."""
    rank, world = rank_and_world()
    if world == 1:
        return x, y
    n = len(y) // world
    return x[rank * n : (rank + 1) * n], y[rank * n : (rank + 1) * n]


def mean(t: torch.Tensor) -> torch.Tensor:
    _, world = rank_and_world()
    if world == 1:
        return t
    t = t.detach().float().clone()
    dist.all_reduce(t)
    return t / world


def any_rank(flag: bool) -> bool:
    _, world = rank_and_world()
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def finish() -> None:
    """Leave the process group together: without the barrier a rank that tears gloo down while its peer
    is still in the last collective can abort ("terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
