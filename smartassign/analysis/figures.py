"""Figures of the knowledge-assignment analysis: the gate heat map and the t-SNE (Fig. 3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from smartassign.analysis.assignment import CLASSES, GateStatistics

KIND_COLOURS = {"rk": "tab:blue", "ck": "tab:green", "sk": "tab:orange"}
KIND_NAMES = {"rk": "F_rk (rain)", "ck": "F_ck (common)", "sk": "F_sk (snow)"}
CLASS_COLOURS = {
    "rain_led": "tab:blue",
    "shared": "tab:green",
    "snow_led": "tab:orange",
    "closed": "lightgrey",
}


def _pyplot() -> ModuleType:
    """``matplotlib.pyplot`` with the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def gate_heatmap(stats: GateStatistics, classes: Sequence[str], title: str, path: Path) -> None:
    """Mean gate per atom (columns) and kind (rows), one panel per task's images, and the
    atoms' classes as a strip below."""
    from matplotlib.colors import ListedColormap

    plt = _pyplot()
    tasks, kinds = stats.tasks, stats.kinds
    grids = {task: np.stack([stats.mean[kind, task] for kind in kinds]) for task in tasks}
    low = min(float(grid.min()) for grid in grids.values())
    high = max(float(grid.max()) for grid in grids.values())
    figure, axes = plt.subplots(
        len(tasks) + 1,
        1,
        figsize=(max(6.0, 0.28 * stats.atoms + 2), 1.2 * len(kinds) * len(tasks) + 1.6),
        gridspec_kw={"height_ratios": [len(kinds)] * len(tasks) + [0.6]},
        squeeze=False,
    )
    image = None
    for axis, task in zip(axes[:-1, 0], tasks, strict=True):
        image = axis.imshow(grids[task], aspect="auto", cmap="viridis", vmin=low, vmax=high)
        axis.set_yticks(range(len(kinds)), [KIND_NAMES[kind] for kind in kinds])
        axis.set_xticks([])
        axis.set_title(f"{task} images ({stats.images[task]}): mean GKFM gate (Eq. 11)")
    strip = axes[-1, 0]
    strip.imshow(
        np.array([[CLASSES.index(found) for found in classes]]),
        aspect="auto",
        cmap=ListedColormap([CLASS_COLOURS[name] for name in CLASSES]),
        vmin=0,
        vmax=len(CLASSES) - 1,
    )
    strip.set_yticks([0], ["class"])
    strip.set_xticks(range(stats.atoms), [str(atom) for atom in range(stats.atoms)], fontsize=7)
    strip.set_xlabel("knowledge atom (channel of F_wk)")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=CLASS_COLOURS[name], label=name) for name in CLASSES
    ]
    strip.legend(
        handles=handles,
        ncol=len(CLASSES),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.9),
        frameon=False,
        fontsize=8,
    )
    if image is not None:
        figure.colorbar(image, ax=axes[:-1, 0].tolist(), label="gate", fraction=0.03)
    figure.suptitle(title)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


Panel = tuple[str, np.ndarray, np.ndarray, np.ndarray | None]
"""``(title, 2-D points, kind of each point, task of each point or None)``."""


def tsne_figure(panels: Sequence[Panel], title: str, path: Path) -> None:
    """One scatter per panel, coloured by kind; where the points' tasks are given, rain
    rows are circles and snow rows triangles."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    for axis, (panel_title, points, kinds, tasks) in zip(axes[0], panels, strict=True):
        for kind in KIND_COLOURS:
            chosen = kinds == kind
            if not chosen.any():
                continue
            if tasks is None:
                axis.scatter(
                    *points[chosen].T, s=14, color=KIND_COLOURS[kind], label=KIND_NAMES[kind]
                )
                continue
            for task, marker in (("rain", "o"), ("snow", "^")):
                both = chosen & (tasks == task)
                if both.any():
                    axis.scatter(
                        *points[both].T,
                        s=6,
                        marker=marker,
                        alpha=0.6,
                        color=KIND_COLOURS[kind],
                        label=f"{KIND_NAMES[kind]}, {task}",
                    )
        axis.set_title(panel_title, fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.legend(fontsize=7, markerscale=1.5)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def note_figure(lines: Sequence[str], path: Path) -> None:
    """A figure holding only ``lines``: what does not apply to the model, in its place."""
    import textwrap

    plt = _pyplot()
    figure = plt.figure(figsize=(7, 2))
    text = "\n".join(textwrap.fill(line, 90) for line in lines) or "nothing to show"
    figure.text(0.02, 0.5, text, va="center", fontsize=9)
    figure.savefig(path, dpi=110)
    plt.close(figure)
