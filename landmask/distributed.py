"""Training on several processes under ``torchrun`` (PyTorch DDP): who this process is (rank, world
size), which share of each batch it trains on, the model wrapper, adding up epoch figures over the
ranks, and the rule that only rank 0 writes files — kept apart from the epoch loop, as torchvision's
references keep ``utils.init_distributed_mode``.

Without torchrun's environment (``WORLD_SIZE`` unset or 1) everything here is a no-op and training
runs exactly as in one process.  torch is imported lazily: importing this module costs nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from landmask.errors import LandmaskError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0           # this process, 0 .. world_size - 1
    world_size: int = 1     # processes training one model together
    local_rank: int = 0     # this process on its machine (its GPU, on a GPU machine)
    backend: str = ""       # "gloo" (CPU) or "nccl" (GPU); "" when not distributed

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files and reports progress."""
        return self.rank == 0


def env_info(environ=None) -> DistInfo:
    """Rank, world size and local rank from torchrun's environment variables (one process when
    they are absent)."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise LandmaskError(f"torchrun's RANK / WORLD_SIZE / LOCAL_RANK are not integers ({e})") from None
    if world < 1 or not 0 <= rank < world:
        raise LandmaskError(f"RANK {rank} does not fit WORLD_SIZE {world}")
    return DistInfo(rank, world, local)


def backend_for(device: str) -> str:
    """gloo for CPU tensors, nccl for CUDA ones (the backends PyTorch recommends for each)."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


def init_distributed_mode(device: str = "cpu") -> DistInfo:
    """Join the process group torchrun set up (``env://``) when there is more than one process;
    returns who this process is.  ``device`` is where training tensors live (it picks the backend)."""
    info = env_info()
    if not info.distributed:
        return info
    import torch.distributed as dist
    backend = os.environ.get("LANDMASK_DIST_BACKEND") or backend_for(device)
    if not dist.is_initialized():
        if backend == "nccl":
            import torch
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend, init_method="env://")
    return DistInfo(info.rank, info.world_size, info.local_rank, backend)


def cleanup(info: DistInfo) -> None:
    """Leave the process group (every rank, at the end of training)."""
    if info.distributed:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()


def wrap_model(model, info: DistInfo):
    """The module training steps go through: ``DistributedDataParallel(model)`` (gradients averaged
    over the ranks in every backward pass) when distributed, else the model itself.  The caller keeps
    the plain model for saving: its state dict has no ``module.`` prefix."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model)


def shard(batch: np.ndarray, info: DistInfo) -> np.ndarray:
    """This rank's share of one global batch of sample indices: every world_size-th, starting at its
    rank, so the ranks' shares are disjoint and together the whole batch (the batch size stays the
    global one whatever the world size: steps per epoch, the schedule and a checkpoint's resume
    state do not depend on it).  A final batch smaller than the world size gives each rank one of
    its items (ranks past its size repeat one), since every rank must take every step."""
    if info.world_size == 1:
        return batch
    if len(batch) >= info.world_size:
        return batch[info.rank::info.world_size]
    return batch[info.rank % len(batch):][:1]


def augment_rng(rng: np.random.Generator, seed: int, epoch: int, info: DistInfo) -> np.random.Generator:
    """The random stream for this rank's augmentation in ``epoch``.  One process uses the run's own
    stream (exactly as without torchrun); several draw the shared batch order from that stream, the
    same on every rank, and augment from a stream of their own (seeded by seed, epoch and rank, so a
    resumed run draws the same)."""
    if info.world_size == 1:
        return rng
    return np.random.default_rng([seed, epoch, info.rank, 0x1a4d])


def sum_over_ranks(values: dict, info: DistInfo) -> dict:
    """Each value (a number) summed over all ranks (every rank must call this)."""
    if not info.distributed:
        return dict(values)
    import torch
    import torch.distributed as dist
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return dict(zip(keys, t.tolist()))


def check_supported(cfg, info: DistInfo) -> None:
    """Training options that do not work with several processes, refused by name before any data
    are read."""
    if info.distributed and getattr(cfg, "device", "cpu") != "cpu":   # e.g. a GPU run resumed under torchrun
        raise LandmaskError(f"--device {cfg.device}: under torchrun training runs on CPUs (gloo); train with --device cpu")
    if info.distributed and cfg.workers:
        raise LandmaskError("--workers is not supported under torchrun with more than one process (each rank "
                            "cuts its own share of the batch); leave it out")
    if info.distributed and cfg.heat_reg:
        raise LandmaskError("--heat-reg is not supported under torchrun with more than one process "
                            "(the heatmap loss bypasses DistributedDataParallel's forward); train it in one process")


def epoch_totals(tr: dict, info: DistInfo) -> dict:
    """An epoch's training loss and MAE over the whole data, from each rank's sums
    (engine.train_one_epoch's ``sums``); every rank must call this."""
    if not info.distributed:
        return tr
    s = sum_over_ranks(tr["sums"], info)
    return {**tr, "loss": s["loss"] / max(s["count"], 1), "mae_px": s["abs_err"] / max(s["n_err"], 1), "sums": s}
