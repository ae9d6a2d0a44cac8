"""Data-parallel work over processes or GPUs through Lightning (DDP), and the rank of a process.

Every rank runs the whole job (Lightning's subprocess launcher re-runs the command; SLURM starts
one task per GPU), so work is split by *items* (batch numbers): rank ``r`` of ``W`` computes
items ``r, r + W, ...`` and writes each result to disk atomically; after a barrier every rank
reads all results back. Gathered results therefore equal a single-process run by construction:
no item is dropped or computed twice, whatever the number of ranks.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

_RANK_VARS = ("RANK", "SLURM_PROCID", "LOCAL_RANK")
_LOCAL_RANK_VARS = ("LOCAL_RANK", "SLURM_LOCALID")


def _env_int(names: Sequence[str], default: int = 0) -> int:
    for name in names:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return default


def global_rank() -> int:
    """This process's rank among all ranks (0 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int(_RANK_VARS)


def local_rank() -> int:
    """This process's rank on its node (selects its GPU)."""
    return _env_int(_LOCAL_RANK_VARS)


def is_global_zero() -> bool:
    """Whether this process writes the run's final results."""
    return global_rank() == 0


def is_distributed(trainer: Mapping[str, Any] | None) -> bool:
    """Whether a Lightning trainer preset runs more than one process (DDP)."""
    if not trainer:
        return False
    strategy = str(trainer.get("strategy", "auto"))
    devices = trainer.get("devices", 1)
    nodes = int(trainer.get("num_nodes", 1) or 1)
    many = nodes > 1 or str(devices) not in ("1", "[0]", "auto") or isinstance(devices, list)
    return "ddp" in strategy and many


def barrier() -> None:
    """Wait for every rank (a no-op when no process group is running)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def remove_tree(path: str | os.PathLike) -> bool:
    """Remove a folder on global rank zero while the other ranks wait; whether it existed."""
    existed = os.path.exists(path)
    if existed and is_global_zero():
        shutil.rmtree(path)
    barrier()
    return existed


def all_ranks_agree(flag: bool) -> bool:
    """``flag`` if it holds on every rank (a no-op when no process group is running)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else "cpu"
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def _first(batch: list[int]) -> int:
    return batch[0]


class _MapModule(pl.LightningModule):
    """Runs ``work(item)`` for this rank's share of ``items`` in ``predict_step``."""

    def __init__(self, items: Sequence[int], work: Callable[[int], None]) -> None:
        super().__init__()
        self.items = list(items)
        self.work = work

    def predict_dataloader(self) -> DataLoader:
        world = self.trainer.world_size
        mine = self.items[self.global_rank :: world]
        steps = -(-len(self.items) // world)  # every rank runs as many steps (-1 = nothing)
        return DataLoader(mine + [-1] * (steps - len(mine)), batch_size=1, collate_fn=_first)

    def predict_step(self, item: int, batch_idx: int) -> int:
        if item >= 0:
            with torch.enable_grad():  # methods need gradients; Lightning disables them
                self.work(int(item))
        return item  # not kept (return_predictions=False); None would make Lightning warn

    def on_predict_epoch_end(self) -> None:
        self.trainer.strategy.barrier("xai_bench.map")


def distributed_map(
    items: Sequence[int],
    work: Callable[[int], None],
    trainer: Mapping[str, Any] | None = None,
    done: Callable[[int], bool] | None = None,
) -> None:
    """Call ``work(item)`` once for every item not ``done``, over the ranks of ``trainer``.

    With a single-process trainer preset (or none) this is a plain loop. With a DDP preset the
    items are spread round-robin over the ranks by ``Trainer.predict`` (which launches the
    processes on first use) and the call returns on every rank when all ranks have finished.
    ``work`` must write its result to disk; ``done`` says whether an item's result is there.

    Args:
        items: the item numbers, the same list on every rank.
        work: computes and stores one item (gradients are enabled).
        trainer: a Lightning ``Trainer`` preset (``xai_bench/configs/trainer/*.yaml``).
        done: skip items whose result exists (resumption); default: none is done.
    """
    items = list(items)
    pending = [i for i in items if done is None or not done(i)]
    if not is_distributed(trainer):
        for item in pending:
            work(item)
        return
    if all_ranks_agree(not pending):
        return
    kwargs = {k: v for k, v in dict(trainer or {}).items() if k != "precision"}
    runner = pl.Trainer(
        **kwargs,
        precision="32-true",  # attributions in full precision, as on one process
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        inference_mode=False,
    )
    # every rank gets the same full list; done items are skipped inside, by the rank owning them
    runner.predict(_MapModule(items, _skip_done(work, done)), return_predictions=False)


def _skip_done(work: Callable[[int], None], done: Callable[[int], bool] | None) -> Callable:
    def run(item: int) -> None:
        if done is None or not done(item):
            work(item)

    return run
