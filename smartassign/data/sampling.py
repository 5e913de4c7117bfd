"""Samplers: rain / snow balanced training epochs and sharded evaluation, both rank-aware.

Both shard over ``num_replicas`` data-parallel workers themselves, so a distributed
training loop uses them as they are (with Ray Train: ``prepare_data_loader(loader,
add_dist_sampler=False)``) and calls :meth:`BalancedTaskSampler.set_epoch` every epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class BalancedTaskSampler(Sampler[int]):
    """Random training indices in which every task present is drawn equally often.

    Each epoch draws ``num_samples`` indices (rounded up to a multiple of
    ``num_replicas``): with ``balance``, an equal share per task, each task cycling through
    fresh random permutations of its own samples (so a small task repeats, a large one is
    sub-sampled); without it, random permutations of all samples. The sequence depends
    only on ``(seed, epoch)``; replica ``rank`` takes every ``num_replicas``-th index.
    """

    def __init__(
        self,
        tasks: Sequence[int],
        *,
        num_samples: int = 0,
        balance: bool = True,
        seed: int = 0,
        rank: int = 0,
        num_replicas: int = 1,
    ):
        if not tasks:
            raise ValueError("BalancedTaskSampler needs at least one sample")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        labels = np.asarray(tasks)
        self.groups = (
            [np.flatnonzero(labels == task) for task in np.unique(labels)]
            if balance
            else [np.arange(len(labels))]
        )
        self.total = math.ceil((num_samples or len(labels)) / num_replicas) * num_replicas
        self.seed = seed
        self.rank = rank
        self.num_replicas = num_replicas
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose sequence :meth:`__iter__` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.total // self.num_replicas

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        shares = np.full(len(self.groups), self.total // len(self.groups))
        shares[: self.total % len(self.groups)] += 1
        drawn = np.concatenate(
            [_cycle(group, share, rng) for group, share in zip(self.groups, shares, strict=True)]
        )
        order = drawn[rng.permutation(len(drawn))]
        return iter(order[self.rank :: self.num_replicas].tolist())


def _cycle(indices: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices from successive random permutations of ``indices``."""
    rounds = math.ceil(count / len(indices))
    return np.concatenate([rng.permutation(indices) for _ in range(rounds)])[:count]


class ShardSampler(Sampler[int]):
    """Evaluation order: ``rank, rank + num_replicas, ...`` (no padding, no repeats)."""

    def __init__(self, length: int, *, rank: int = 0, num_replicas: int = 1):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.indices = range(rank, length, num_replicas)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)
