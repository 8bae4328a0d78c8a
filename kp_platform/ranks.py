"""What a process of a multi-process (DDP) run shares with the others, below the data, model
and training layers that use it: the validation sampler that deals out whole batches without
padding, and the collectives that keep the ranks in step (a NaN seen together, rank 0's
BatchNorm statistics). In one process every function here is a no-op or the plain answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler

from kp_platform.errors import InputError


class BatchAlignedSampler(DistributedSampler):
    """Deals out whole batches of the one-process order, without padding: rank r gets batches
    r, r + W, r + 2W, ... of `range(len(dataset))` cut into `batch_size` pieces.

    So every image is computed in the very batch it would be in one process (a convolution's
    float result can depend on its batch's size), and no image is repeated: Lightning's
    DistributedSampler repeats images until every rank has as many, and a repeated image counts
    twice in `num_gt` and AP. Ranks may run one batch fewer than others; that is safe in
    validation (DDP syncs buffers on the first batch only).

    Args:
        dataset: The validation dataset.
        batch_size: The loader's batch size.
        num_replicas: World size.
        rank: This process's global rank.
    """

    def __init__(self, dataset: Dataset, batch_size: int, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        size = len(dataset)  # type: ignore[arg-type]
        starts = range(rank * batch_size, size, num_replicas * batch_size)
        self.indices = [i for start in starts for i in range(start, min(start + batch_size, size))]
        self.num_samples = len(self.indices)
        self.total_size = size

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return self.num_samples


def validation_sampler(dataset: Dataset, trainer: Any, batch_size: int) -> Sampler | None:
    """The validation sampler of this process under DDP (`BatchAlignedSampler`), else None.

    Raises:
        InputError: fewer validation batches than processes (`check_batches`).
    """
    world = int(getattr(trainer, "world_size", 1) or 1) if trainer is not None else 1
    if world <= 1:
        return None
    check_batches(len(dataset), batch_size, world)  # type: ignore[arg-type]
    return BatchAlignedSampler(dataset, batch_size, world, trainer.global_rank)


def check_batches(size: int, batch_size: int, world: int) -> None:
    """Refuses fewer validation batches than processes (before any process starts, if called
    early): a rank without a batch would leave the others waiting.

    Raises:
        InputError: naming the counts.
    """
    batches = -(-size // batch_size)
    if batches < world:
        raise InputError(f"{size} validation images make {batches} batch(es) of {batch_size} "
                         f"for {world} processes; every process needs at least one batch (use "
                         "fewer devices or a smaller batch size)", "devices")


def all_ranks_finite(value: torch.Tensor, trainer: Any) -> bool:
    """Whether `value` is finite on every rank (one all-reduce when distributed).

    A rank that raised on its own NaN would leave the others waiting at the next collective;
    agreeing first makes every rank raise together.
    """
    finite = torch.isfinite(value.detach()).all().to(torch.float32)
    if trainer is not None and int(getattr(trainer, "world_size", 1) or 1) > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item() > 0)


def share_rank_zero_buffers(module: torch.nn.Module, trainer: Any) -> None:
    """Copies rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers before each *training* forward, after which every rank updates its
    running statistics on its own batch, so after the last step the ranks' statistics differ.
    Validation then has to use rank 0's, the ones its checkpoint holds.
    """
    if trainer is None or int(getattr(trainer, "world_size", 1) or 1) <= 1:
        return
    if not (dist.is_available() and dist.is_initialized()):
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)
