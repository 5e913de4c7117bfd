"""Tables 3 and 4 of the paper from the runs of an ablation study, with their spread.

Each run (arm x seed) scores its model on the test split (:func:`smartassign.evaluation
.evaluate`): PSNR / SSIM on RGB and on Y per dataset and task. Over the seeds of an arm a
cell is ``mean ± std`` (sample standard deviation, ``n - 1``; the mean alone for one
seed). Rows are (dataset, task) as in the paper (Rain1200 is a rain row, CSD a snow row);
the V4 column holds the rain model V4^r on rain rows and the snow model V4^s on snow rows.

:func:`write_report` writes to ``ablation.out_dir``:

- ``tables.md``: Table 3 (V1-V6) and Table 4 (K1, K2 and V6), on Y and on RGB;
- ``metrics.json`` (DVC metrics): ``<arm>.<dataset>.<task>.<metric>.{mean,std}`` and ``seeds``;
- ``runs.csv``: one line per run and (dataset, task), with its Ray trial and MLflow run;
- ``knowledge.csv``: one line per run: the knowledge-assignment numbers of
  :mod:`smartassign.analysis` (atoms per class, separation of rk / ck / sk on the pooled
  raw atoms, which every arm with GKFMs has, and in the DRM space, which V1, K1, K2 lack);
  ``tables.md`` and ``metrics.json`` hold them per arm, over the seeds;
- ``ablation.png``: a bar plot of ``ablation.metric`` per arm, error bars one std.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from smartassign.ablation.arms import Arm

METRICS = ("psnr", "psnr_y", "ssim", "ssim_y")
TABLES_FILE, METRICS_FILE, RUNS_FILE, KNOWLEDGE_FILE, PLOT_FILE = (
    "tables.md",
    "metrics.json",
    "runs.csv",
    "knowledge.csv",
    "ablation.png",
)
KNOWLEDGE_PREFIX = "knowledge/"
"""Prefix of a run's knowledge-assignment numbers in its last result."""
KNOWLEDGE = (
    "separation_atoms",
    "separation_drm",
    "atoms_rain_led",
    "atoms_shared",
    "atoms_snow_led",
    "atoms_closed",
)
"""The knowledge-assignment numbers of a run the report shows, in its column order."""
#: what each column of the tables removes (paper Sec. 4.3)
REMOVED = {
    "V1": "knowledge contrast",
    "V2": "GKFM and TKFF (conventional multi-task learning)",
    "V3": "gated CNN branch of GLSF-ViT",
    "V4": "the other task (single-task models V4^r, V4^s)",
    "V5": "recognition task",
    "V6": "nothing (full SmartAssign)",
    "K1": "unique knowledge: decoders read only F_ck (backbone frozen from V6)",
    "K2": "common knowledge: D_dr reads only F_rk, D_ds only F_sk (backbone frozen from V6)",
}


@dataclass(frozen=True)
class Score:
    """Test scores of one run on one (dataset, task): a line of ``runs.csv``."""

    arm: str
    seed: int
    dataset: str
    task: str
    psnr: float
    psnr_y: float
    ssim: float
    ssim_y: float
    trial_id: str = ""
    mlflow_run_id: str = ""


def scores_of_run(
    arm: str,
    seed: int,
    metrics: Mapping[str, Any],
    *,
    trial_id: str = "",
    mlflow_run_id: str = "",
    split: str = "test",
) -> list[Score]:
    """The per-(dataset, task) scores in one run's evaluation metrics
    (``<split>/<dataset>/<task>/<metric>`` keys)."""
    groups = sorted(
        {
            tuple(key.split("/")[1:3])
            for key in metrics
            if key.startswith(f"{split}/") and key.count("/") == 3
        }
    )
    return [
        Score(
            arm,
            seed,
            dataset,
            task,
            **{m: float(metrics[f"{split}/{dataset}/{task}/{m}"]) for m in METRICS},
            trial_id=trial_id,
            mlflow_run_id=mlflow_run_id,
        )
        for dataset, task in groups
    ]


@dataclass(frozen=True)
class KnowledgeScore:
    """The knowledge-assignment numbers of one run (those its model has): a line of
    ``knowledge.csv``."""

    arm: str
    seed: int
    values: dict[str, float]


def knowledge_of_run(arm: str, seed: int, metrics: Mapping[str, Any]) -> KnowledgeScore:
    """The ``knowledge/<name>`` numbers of :data:`KNOWLEDGE` in one run's last result."""
    found = {
        name: float(metrics[f"{KNOWLEDGE_PREFIX}{name}"])
        for name in KNOWLEDGE
        if f"{KNOWLEDGE_PREFIX}{name}" in metrics
    }
    return KnowledgeScore(arm, seed, found)


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of one value over the seeds of an arm."""

    mean: float
    std: float | None  # None for a single seed
    n: int

    def text(self, digits: int) -> str:
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def spread(values: Sequence[float]) -> Spread:
    """Mean and sample standard deviation (``n - 1``) of ``values``."""
    if not values:
        raise ValueError("spread of no values")
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return Spread(mean, None, 1)
    return Spread(mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)), n)


#: (arm, dataset, task) -> metric -> spread over seeds
Stats = dict[tuple[str, str, str], dict[str, Spread]]


def aggregate(scores: Iterable[Score]) -> Stats:
    """Every metric of every (arm, dataset, task), over the seeds."""
    values: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for score in scores:
        for metric in METRICS:
            values[score.arm, score.dataset, score.task][metric].append(getattr(score, metric))
    return {
        key: {metric: spread(found) for metric, found in per_metric.items()}
        for key, per_metric in values.items()
    }


#: arm -> knowledge number -> spread over seeds
KnowledgeStats = dict[str, dict[str, Spread]]


def aggregate_knowledge(scores: Iterable[KnowledgeScore]) -> KnowledgeStats:
    """Every knowledge number of every arm, over the seeds."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for score in scores:
        for name, value in score.values.items():
            values[score.arm][name].append(value)
    return {
        arm: {name: spread(found) for name, found in per_name.items()}
        for arm, per_name in values.items()
    }


def knowledge_table(stats: KnowledgeStats, arms: Sequence[Arm]) -> str:
    """One row per arm: separation of rk / ck / sk (pooled raw atoms, DRM space) and the
    atoms per class; ``-`` where the arm has no such number (V2 has no GKFM, V1 / K1 / K2
    no DRM)."""
    lines = [
        "| arm | separation (atoms) | separation (DRM) | rain-led | shared | snow-led | closed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in arms:
        found = stats.get(arm.name, {})
        cells = [
            found[name].text(3 if name.startswith("separation") else 1) if name in found else "-"
            for name in KNOWLEDGE
        ]
        lines.append(f"| {arm.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: a table column: header and the arm shown in it per task
Column = tuple[str, dict[str, str]]


def columns(arms: Sequence[Arm], table: int) -> list[Column]:
    """The columns of Table 3 (V1-V6, V4 holding V4^r / V4^s) or Table 4 (K1, K2, V6)."""
    picked: list[Column] = []
    both = ("rain", "snow")
    for arm in arms:
        if arm.from_v6 != (table == 4):
            continue
        if arm.task is None:
            picked.append((arm.name, dict.fromkeys(both, arm.name)))
        elif picked and picked[-1][0] == "V4":
            picked[-1][1][arm.task] = arm.name
        else:
            picked.append(("V4", {arm.task: arm.name}))
    if table == 4 and picked and any(arm.name == "V6" for arm in arms):
        picked.append(("V6 (ours)", dict.fromkeys(both, "V6")))
    return picked


def markdown_table(stats: Stats, cols: Sequence[Column], psnr: str, ssim: str) -> str:
    """Rows (dataset, task), one ``PSNR / SSIM`` cell per column; the best PSNR in bold."""
    groups = sorted({(dataset, task) for _, dataset, task in stats})
    lines = [
        "| dataset | task | " + " | ".join(header for header, _ in cols) + " |",
        "|---|---|" + "---:|" * len(cols),
    ]
    for dataset, task in groups:
        found = {
            header: stats[arms[task], dataset, task]
            for header, arms in cols
            if task in arms and (arms[task], dataset, task) in stats
        }
        best = max((cell[psnr].mean for cell in found.values()), default=None)
        cells = []
        for header, _ in cols:
            cell = found.get(header)
            if cell is None:
                cells.append("-")
                continue
            text = f"{cell[psnr].text(2)} / {cell[ssim].text(4)}"
            cells.append(f"**{text}**" if cell[psnr].mean == best and len(found) > 1 else text)
        lines.append(f"| {dataset} | {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tables_markdown(
    stats: Stats,
    arms: Sequence[Arm],
    seeds: Sequence[int],
    overrides: Mapping[str, Any],
    knowledge: KnowledgeStats | None = None,
) -> str:
    """``tables.md``: Tables 3 and 4, each on Y and on RGB, with what each column removes;
    then the knowledge assignment per arm."""
    budget = ", ".join(f"`{k}={v}`" for k, v in overrides.items()) or "params.yaml as is"
    listed = ", ".join(map(str, seeds))
    over = (
        f"mean ± sample standard deviation over {len(seeds)} seeds ({listed})"
        if len(seeds) > 1
        else f"one seed ({listed}), so no spread"
    )
    parts = [
        "# Ablation study: paper Tables 3 and 4\n",
        f"Test split; each cell is `PSNR (dB) / SSIM`, {over}; bold: best mean PSNR of the "
        f"row. Every arm had the same budget: {budget}.\n",
    ]
    titles = {
        3: "Table 3: effectiveness of key designs (V1-V6)",
        4: "Table 4: effectiveness of unique and common knowledge (K1, K2)",
    }
    for table, title in titles.items():
        cols = columns(arms, table)
        if table == 4 and not any(header in ("K1", "K2") for header, _ in cols):
            continue
        removed = "; ".join(
            f"{h}: {REMOVED[h.split()[0]]}" for h, _ in cols if h.split()[0] in REMOVED
        )
        parts += [
            f"## {title}\n",
            "On the Y channel (BT.601 luma, the deraining convention), PSNR-Y / SSIM-Y:\n",
            markdown_table(stats, cols, "psnr_y", "ssim_y"),
            "On RGB, PSNR / SSIM:\n",
            markdown_table(stats, cols, "psnr", "ssim"),
            f"Removed: {removed}.\n",
        ]
    if knowledge:
        parts += [
            "## Knowledge assignment per arm (paper Fig. 3, docs/analysis.md)\n",
            "Test split. Separation: silhouette score (cosine) of the rk / ck / sk rows per "
            "image, mean over the images; on the pooled raw atoms (every arm with GKFMs) and "
            "on the DRM rows (arms with the knowledge contrast). Atoms per class by the rule "
            "of `analysis.lead_margin` / `analysis.closed_below`.\n",
            knowledge_table(knowledge, arms),
        ]
    return "\n".join(parts)


def _spread_node(value: Spread) -> dict[str, float]:
    node = {"mean": round(value.mean, 4)}
    if value.std is not None:
        node["std"] = round(value.std, 4)
    return node


def metrics_tree(
    stats: Stats, seeds: Sequence[int], knowledge: KnowledgeStats | None = None
) -> dict[str, Any]:
    """``metrics.json``: ``<arm>.<dataset>.<task>.<metric>.{mean,std}`` (std from 2 seeds)
    and ``<arm>.knowledge.<name>.{mean,std}``."""
    tree: dict[str, Any] = {"seeds": len(seeds)}
    for (arm, dataset, task), per_metric in sorted(stats.items()):
        node = tree.setdefault(arm, {}).setdefault(dataset, {}).setdefault(task, {})
        for metric, value in per_metric.items():
            node[metric] = _spread_node(value)
    for arm, per_name in sorted((knowledge or {}).items()):
        node = tree.setdefault(arm, {}).setdefault("knowledge", {})
        for name, value in per_name.items():
            node[name] = _spread_node(value)
    return tree


def flat_metrics(stats: Stats, knowledge: KnowledgeStats | None = None) -> dict[str, float]:
    """Every cell as MLflow metrics: ``<arm>/<dataset>/<task>/<metric>`` (mean) and
    ``..._std``; the knowledge numbers as ``<arm>/knowledge/<name>``."""
    cells = {
        f"{arm}/{dataset}/{task}/{metric}": value
        for (arm, dataset, task), per_metric in stats.items()
        for metric, value in per_metric.items()
    }
    cells.update(
        {
            f"{arm}/knowledge/{name}": value
            for arm, per_name in (knowledge or {}).items()
            for name, value in per_name.items()
        }
    )
    flat: dict[str, float] = {}
    for key, value in cells.items():
        flat[key] = value.mean
        if value.std is not None:
            flat[f"{key}_std"] = value.std
    return flat


def bar_plot(stats: Stats, arms: Sequence[Arm], metric: str, path: Path) -> None:
    """One panel per (dataset, task): ``metric`` per arm, error bars one std, V6 highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(dataset, task) for _, dataset, task in stats})
    figure, axes = plt.subplots(
        1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False, sharey=False
    )
    for axis, (dataset, task) in zip(axes[0], groups, strict=True):
        shown = [arm for arm in arms if (arm.name, dataset, task) in stats]
        values = [stats[arm.name, dataset, task][metric] for arm in shown]
        means = [v.mean for v in values]
        errors = [v.std or 0.0 for v in values]
        colours = [
            "tab:red" if arm.name == "V6" else "tab:purple" if arm.from_v6 else "tab:blue"
            for arm in shown
        ]
        axis.bar([arm.name for arm in shown], means, yerr=errors, color=colours, capsize=3)
        low = min(m - e for m, e in zip(means, errors, strict=True))
        high = max(m + e for m, e in zip(means, errors, strict=True))
        margin = max(high - low, 1e-3) * 0.5
        axis.set_ylim(low - margin, high + margin * 0.5)
        axis.set_title(f"{dataset} / {task}")
        axis.set_ylabel(f"test {metric}")
        axis.tick_params(axis="x", labelrotation=45)
    seeds = max(v.n for cell in stats.values() for v in cell.values())
    figure.suptitle(
        f"Ablation (paper Tables 3 and 4): mean over {seeds} seed(s), error bars one std; "
        "the axis does not start at 0"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(
    scores: Sequence[Score],
    out_dir: str | Path,
    *,
    arms: Sequence[Arm],
    seeds: Sequence[int],
    overrides: Mapping[str, Any],
    metric: str,
    knowledge: Sequence[KnowledgeScore] = (),
) -> Path:
    """Write the five files of the module docstring to ``out_dir``; return it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = aggregate(scores)
    assigned = aggregate_knowledge(knowledge)
    (out / TABLES_FILE).write_text(tables_markdown(stats, arms, seeds, overrides, assigned))
    tree = metrics_tree(stats, seeds, assigned)
    (out / METRICS_FILE).write_text(json.dumps(tree, indent=2) + "\n")
    with (out / RUNS_FILE).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(Score)])
        writer.writeheader()
        for score in sorted(scores, key=lambda s: (s.arm, s.seed, s.dataset, s.task)):
            writer.writerow(
                {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(score).items()}
            )
    with (out / KNOWLEDGE_FILE).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["arm", "seed", *KNOWLEDGE])
        writer.writeheader()
        for run in sorted(knowledge, key=lambda k: (k.arm, k.seed)):
            writer.writerow(
                {
                    "arm": run.arm,
                    "seed": run.seed,
                    **{k: round(v, 4) for k, v in run.values.items()},
                }
            )
    bar_plot(stats, arms, metric, out / PLOT_FILE)
    return out
