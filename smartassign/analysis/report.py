"""The knowledge-assignment analysis of one model and its files.

:func:`analyze_knowledge` computes the numbers (gate statistics, atom classes and counts,
separation) from the collected knowledge (:mod:`smartassign.analysis.collect`), taking
what the variant has: V2 has no GKFM, so nothing applies; V1, K1 and K2 have no DRM, so
the DRM-space separation is left out and the t-SNE shows the pooled raw atoms; V4 lacks
one kind. Each part left out gets a line in ``skipped``.

:func:`write_analysis` writes to ``analysis.out_dir``:

- ``gates.csv``: one line per (atom, kind, task): mean and std of the gate over the task's
  images, and the atom's class;
- ``assignment.json``: the rule with its thresholds, each atom's affinities and class, the
  separation per task, the lines of what was skipped;
- ``metrics.json`` (DVC metrics): atoms per class, the separation numbers, image counts;
- ``gates.png``: heat map of the gates (atoms x kinds, rain vs snow images) and the classes;
- ``tsne.png``: the Fig. 3 analogue, t-SNE of the rows of one rainy image, one snowy image
  and the whole split, coloured by kind.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from smartassign.analysis import figures
from smartassign.analysis.assignment import (
    AFFINITY,
    GateStatistics,
    affinities,
    class_counts,
    classify_atoms,
    gate_statistics,
    image_spread,
    task_gap,
)
from smartassign.analysis.collect import ImageKnowledge
from smartassign.analysis.separation import Separation, Space, labelled_rows, rows_of, separation
from smartassign.analysis.separation import tsne as embed
from smartassign.config import AnalysisConfig

GATES_FILE, ASSIGNMENT_FILE, METRICS_FILE = "gates.csv", "assignment.json", "metrics.json"
HEATMAP_FILE, TSNE_FILE = "gates.png", "tsne.png"
FILES = (GATES_FILE, ASSIGNMENT_FILE, METRICS_FILE, HEATMAP_FILE, TSNE_FILE)
SPACE_NAMES = {"drm": "DRM rows (M_rk, M_ck, M_sk)", "atoms": "pooled raw atoms"}


@dataclass
class Analysis:
    """The numbers of one model's analysis; ``stats`` and ``classes`` are ``None`` and
    ``separation`` empty for a model without GKFMs."""

    variant: str
    split: str
    images: dict[str, int]
    stats: GateStatistics | None = None
    classes: list[str] | None = None
    separation: dict[Space, Separation] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return class_counts(self.classes) if self.classes is not None else {}

    def metrics(self) -> dict[str, float]:
        """Flat numbers: ``images_<task>``, ``atoms``, ``atoms_<class>``, ``gate_task_gap``
        and ``gate_image_spread`` (:mod:`.assignment`), ``separation_<space>`` (and
        ``_std``, ``_<task>``)."""
        found: dict[str, float] = {f"images_{t}": n for t, n in self.images.items()}
        if self.stats is not None:
            found["atoms"] = self.stats.atoms
            found.update({f"atoms_{name}": count for name, count in self.counts.items()})
            gap = task_gap(self.stats)
            if gap is not None:
                found["gate_task_gap"] = round(gap, 4)
            found["gate_image_spread"] = round(image_spread(self.stats), 4)
        for space, value in self.separation.items():
            found[f"separation_{space}"] = round(value.mean, 4)
            found[f"separation_{space}_std"] = round(value.std, 4)
            found.update(
                {f"separation_{space}_{t}": round(v, 4) for t, v in value.per_task.items()}
            )
        return found


def analyze_knowledge(
    records: Sequence[ImageKnowledge],
    variant: str,
    split: str,
    settings: AnalysisConfig,
    images: dict[str, int],
) -> Analysis:
    """Gate statistics, classes and separation of ``records`` (empty for a model without
    GKFMs: only the skip line)."""
    analysis = Analysis(variant, split, images)
    if not records:
        analysis.skipped.append(
            f"gate statistics, atom classes, separation and t-SNE: variant {variant} has no "
            "GKFM (conventional multi-task learning), so there is no rk / ck / sk knowledge"
        )
        return analysis
    analysis.stats = gate_statistics(records)
    found = affinities(analysis.stats)
    analysis.classes = classify_atoms(
        found["rain"],
        found["common"],
        found["snow"],
        lead_margin=settings.lead_margin,
        closed_below=settings.closed_below,
    )
    for name, value in found.items():
        if value is None:
            kind, tasks = AFFINITY[name]
            analysis.skipped.append(
                f"{name} affinity: no {kind} gate over {' and '.join(tasks)} images (variant "
                f"{variant} or the split lacks it); no atom is classed by it"
            )
    kinds = analysis.stats.kinds
    if len(kinds) < 2:
        analysis.skipped.append(f"separation: variant {variant} has one kind of knowledge only")
        return analysis
    analysis.separation["atoms"] = separation(records, "atoms")
    if records[0].drm is not None:
        analysis.separation["drm"] = separation(records, "drm")
    else:
        analysis.skipped.append(
            f"DRM-space separation: variant {variant} has no DRM (no knowledge contrast); "
            "the separation and the t-SNE use the pooled raw atoms"
        )
    return analysis


def _write_csv(analysis: Analysis, path: Path) -> None:
    stats, classes = analysis.stats, analysis.classes
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["atom", "kind", "task", "images", "gate_mean", "gate_std", "class"])
        if stats is None or classes is None:
            return
        for (kind, task), means in stats.mean.items():
            for atom, value in enumerate(means):
                writer.writerow(
                    [
                        atom,
                        kind,
                        task,
                        stats.images[task],
                        round(float(value), 5),
                        round(float(stats.std[kind, task][atom]), 5),
                        classes[atom],
                    ]
                )


def _assignment(analysis: Analysis, settings: AnalysisConfig, sha256: str) -> dict[str, object]:
    atoms = []
    if analysis.stats is not None and analysis.classes is not None:
        found = affinities(analysis.stats)
        for atom, name in enumerate(analysis.classes):
            values = {
                key: (round(float(value[atom]), 5) if value is not None else None)
                for key, value in found.items()
            }
            atoms.append({"atom": atom, "class": name, **values})
    return {
        "variant": analysis.variant,
        "split": analysis.split,
        "manifest_sha256": sha256,
        "images": analysis.images,
        "rule": {
            "text": "closed: every affinity < closed_below; rain_led: rain - max(common, snow) "
            ">= lead_margin; snow_led: snow - max(rain, common) >= lead_margin; shared: "
            "otherwise (rain = rk gate over rain images, snow = sk gate over snow images, "
            "common = ck gate, mean of the two tasks)",
            "lead_margin": settings.lead_margin,
            "closed_below": settings.closed_below,
        },
        "counts": analysis.counts,
        "atoms": atoms,
        "separation": {
            space: {"mean": value.mean, "std": value.std, "per_task": value.per_task}
            for space, value in analysis.separation.items()
        },
        "skipped": analysis.skipped,
    }


def _tsne_panels(
    records: Sequence[ImageKnowledge], space: Space, settings: AnalysisConfig
) -> list[figures.Panel]:
    """One rainy image, one snowy image (the first of each) and the whole split."""
    panels: list[figures.Panel] = []
    for task in ("rain", "snow"):
        first = next((record for record in records if record.task == task), None)
        if first is not None:
            rows, kinds = labelled_rows(rows_of(first, space))
            points = embed(rows, settings.tsne_perplexity, settings.seed)
            panels.append((f"one {task} image ({Path(first.name).name})", points, kinds, None))
    stacked, kinds, tasks = [], [], []
    for record in records:
        rows, labels = labelled_rows(rows_of(record, space))
        stacked.append(rows)
        kinds.append(labels)
        tasks.append(np.full(len(labels), record.task))
    rows, kind_of, task_of = (np.concatenate(parts) for parts in (stacked, kinds, tasks))
    if len(rows) > settings.tsne_points:
        keep = np.random.default_rng(settings.seed).choice(
            len(rows), settings.tsne_points, replace=False
        )
        rows, kind_of, task_of = rows[keep], kind_of[keep], task_of[keep]
    points = embed(rows, settings.tsne_perplexity, settings.seed)
    panels.append(
        (f"whole split ({len(records)} images, {len(rows)} rows)", points, kind_of, task_of)
    )
    return panels


def write_analysis(
    analysis: Analysis,
    records: Sequence[ImageKnowledge],
    settings: AnalysisConfig,
    out_dir: Path,
    sha256: str,
) -> Path:
    """The five files of the module docstring in ``out_dir`` (a figure that does not apply
    says why in its place, so the DVC outputs always exist)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(analysis, out_dir / GATES_FILE)
    (out_dir / ASSIGNMENT_FILE).write_text(
        json.dumps(_assignment(analysis, settings, sha256), indent=2) + "\n"
    )
    (out_dir / METRICS_FILE).write_text(json.dumps(analysis.metrics(), indent=2) + "\n")
    name = f"variant {analysis.variant}, {analysis.split} split"
    if analysis.stats is not None and analysis.classes is not None:
        figures.gate_heatmap(
            analysis.stats,
            analysis.classes,
            f"Knowledge assignment, {name}",
            out_dir / HEATMAP_FILE,
        )
    else:
        figures.note_figure(analysis.skipped, out_dir / HEATMAP_FILE)
    if analysis.separation:
        space: Space = "drm" if "drm" in analysis.separation else "atoms"
        figures.tsne_figure(
            _tsne_panels(records, space, settings),
            f"t-SNE of the {SPACE_NAMES[space]}, {name}; separation (silhouette) "
            f"{analysis.separation[space].mean:.3f}",
            out_dir / TSNE_FILE,
        )
    else:
        figures.note_figure(analysis.skipped, out_dir / TSNE_FILE)
    return out_dir
