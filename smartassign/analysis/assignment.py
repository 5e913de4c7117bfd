"""The knowledge assignment: GKFM gate statistics per atom, kind and task, and each atom's
class.

The GKFMs (Eq. 11) scale every knowledge atom (channel of F_wk) by a gate before it
becomes unique rain knowledge (``rk``), common knowledge (``ck``) or unique snow knowledge
(``sk``). Averaged over a split's rain images and over its snow images, the gates say which
atoms each kind of knowledge is built from: the assignment the paper learns.

An atom's class compares three affinities: ``rain`` = its ``rk`` gate over rain images,
``snow`` = its ``sk`` gate over snow images, ``common`` = its ``ck`` gate over all images
(the mean of the two tasks' means). With ``lead_margin`` and ``closed_below``
(``analysis`` in params.yaml):

- ``closed``: every affinity is below ``closed_below`` (no kind passes the atom);
- ``rain_led``: ``rain`` exceeds both ``common`` and ``snow`` by at least ``lead_margin``;
- ``snow_led``: ``snow`` exceeds both ``rain`` and ``common`` by at least ``lead_margin``;
- ``shared``: otherwise (common knowledge leads, or no unique kind leads by the margin).

A kind the model lacks (a single-task V4) or a task without images has no affinity and
cannot lead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smartassign.analysis.collect import ImageKnowledge

CLASSES = ("rain_led", "shared", "snow_led", "closed")
"""Atom classes, in the order of every table and plot."""
AFFINITY = {
    "rain": ("rk", ("rain",)),
    "common": ("ck", ("rain", "snow")),
    "snow": ("sk", ("snow",)),
}
"""Affinity -> (kind whose gate it reads, tasks whose images it averages)."""


@dataclass(frozen=True)
class GateStatistics:
    """Mean and standard deviation over images of every atom's gate, per (kind, task);
    ``images[task]``: how many images of the task were averaged."""

    mean: dict[tuple[str, str], np.ndarray]
    std: dict[tuple[str, str], np.ndarray]
    images: dict[str, int]

    @property
    def atoms(self) -> int:
        return len(next(iter(self.mean.values())))

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(kind for kind, _ in self.mean))

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(task for _, task in self.mean))


def gate_statistics(records: Sequence[ImageKnowledge]) -> GateStatistics:
    """Per (kind, task): mean and population standard deviation of the gates over the
    task's images."""
    if not records:
        raise ValueError("no images to compute gate statistics on")
    stacks: dict[tuple[str, str], list[np.ndarray]] = {}
    for record in records:
        for kind, gates in record.gates.items():
            stacks.setdefault((kind, record.task), []).append(gates)
    mean = {key: np.mean(values, axis=0) for key, values in stacks.items()}
    std = {key: np.std(values, axis=0) for key, values in stacks.items()}
    images = {}
    for record in records:
        images[record.task] = images.get(record.task, 0) + 1
    return GateStatistics(mean, std, images)


def task_gap(stats: GateStatistics) -> float | None:
    """How much the gates depend on the task of the image: the mean over kinds and atoms of
    ``|mean over rain images - mean over snow images|``; ``None`` without both tasks."""
    gaps = [
        np.abs(stats.mean[kind, "rain"] - stats.mean[kind, "snow"])
        for kind in stats.kinds
        if (kind, "rain") in stats.mean and (kind, "snow") in stats.mean
    ]
    return float(np.mean(gaps)) if gaps else None


def image_spread(stats: GateStatistics) -> float:
    """How much the gates vary between images of one task: the mean of their standard
    deviations over kinds, tasks and atoms (set beside :func:`task_gap`)."""
    return float(np.mean(list(stats.std.values())))


def affinities(stats: GateStatistics) -> dict[str, np.ndarray | None]:
    """``rain`` / ``common`` / ``snow`` affinity of every atom (module docstring); ``None``
    where the kind or every task it averages is missing."""
    found: dict[str, np.ndarray | None] = {}
    for name, (kind, tasks) in AFFINITY.items():
        means = [stats.mean[kind, task] for task in tasks if (kind, task) in stats.mean]
        found[name] = np.mean(means, axis=0) if means else None
    return found


def classify_atoms(
    rain: np.ndarray | None,
    common: np.ndarray | None,
    snow: np.ndarray | None,
    *,
    lead_margin: float,
    closed_below: float,
) -> list[str]:
    """The class of each atom from its three affinities (module docstring)."""
    present = [values for values in (rain, common, snow) if values is not None]
    if not present:
        raise ValueError("no affinity to classify atoms by")
    missing = np.full(len(present[0]), -np.inf)
    r, c, s = (missing if values is None else np.asarray(values) for values in (rain, common, snow))
    top = np.max(np.stack([r, c, s]), axis=0)
    classes = []
    for index in range(len(top)):
        if top[index] < closed_below:
            classes.append("closed")
        elif r[index] - max(c[index], s[index]) >= lead_margin:
            classes.append("rain_led")
        elif s[index] - max(r[index], c[index]) >= lead_margin:
            classes.append("snow_led")
        else:
            classes.append("shared")
    return classes


def class_counts(classes: Sequence[str]) -> dict[str, int]:
    """Atoms per class, every class listed."""
    return {name: sum(found == name for found in classes) for name in CLASSES}
