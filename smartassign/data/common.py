"""Vocabulary shared by the data modules: tasks, splits, pairs, issues and the data error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np

TASKS: tuple[str, ...] = ("rain", "snow")
"""Task names as written in manifests; a task's integer label is its index (0 rain, 1 snow)."""

SPLITS: tuple[str, ...] = ("train", "val", "test")

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"})
"""File suffixes (lower case) that layouts treat as images; other files are ignored."""

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
"""BT.601 luma weights of ``R, G, B`` (``image @ LUMA``: an ``H x W`` luma map)."""

Item = TypeVar("Item")


def seeded_subset(items: Sequence[Item], limit: int, rng: np.random.Generator) -> list[Item]:
    """At most ``limit`` of ``items`` (all when ``limit`` is 0), drawn by ``rng``, in their
    order; ``rng`` draws only when there are more items than ``limit``."""
    if not limit or len(items) <= limit:
        return list(items)
    return [items[i] for i in sorted(rng.choice(len(items), limit, replace=False))]


def task_label(task: str) -> int:
    """Integer label of a task name: 0 for ``"rain"``, 1 for ``"snow"``."""
    try:
        return TASKS.index(task)
    except ValueError:
        raise DataError(f"unknown task {task!r}; expected one of {TASKS}") from None


class DataError(ValueError):
    """A data problem stated for a person: what is wrong and, where known, with which file."""

    def __init__(self, reason: str, *, path: Path | str | None = None, kind: str = "error"):
        self.reason = reason
        self.path = None if path is None else str(path)
        self.kind = kind
        super().__init__(reason if path is None else f"{path}: {reason}")


@dataclass(frozen=True)
class Pair:
    """One degraded input and its clean target, as a layout adapter lists them.

    ``split`` is ``None`` where the published layout has no split for the pair; the
    prepare stage then assigns one. ``side_by_side`` marks a single file holding the input
    (left half) and the target (right half), as in DID-MDN / Rain1200.
    """

    input: Path
    target: Path
    task: str
    split: str | None = None
    subset: str = ""
    side_by_side: bool = False

    @property
    def group(self) -> str:
        """Pairs sharing a clean image share a group and so always land in the same split."""
        return str(self.target)


@dataclass(frozen=True)
class Issue:
    """A file the prepare stage skipped or fixed, with a short ``kind`` and a full reason."""

    dataset: str
    path: str
    kind: str
    reason: str
    action: Literal["skipped", "fixed"]

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form for the report."""
        return {
            "dataset": self.dataset,
            "path": self.path,
            "kind": self.kind,
            "reason": self.reason,
            "action": self.action,
        }


def identical_pair(
    pair: Pair, degraded: np.ndarray, clean: np.ndarray, dataset: str
) -> Issue | None:
    """The issue of a pair whose input and target hold the same pixels (nothing to
    restore; RainTrainL pair 6 of the release), or ``None``."""
    if not np.array_equal(degraded, clean):
        return None
    reason = f"input and target {pair.target.name} are identical: nothing to restore"
    return Issue(dataset, str(pair.input), "identical_pair", reason, "skipped")
