"""Evaluation: per dataset and task, PSNR / SSIM on RGB and Y, recognition accuracy.

Every image is restored by its own task's decoder (the label is known) and scored on
8-bit output with :mod:`smartassign.metrics`; the recognition head's choice is scored
separately. Two kinds of images are scored: a split of the prepared manifests
(:func:`evaluate`, the test split by default) and the real check sets of
:mod:`smartassign.data.real_checks` (:func:`evaluate_real`, ``split`` ``real``), whole
images both. Outputs (``write_evaluation``): a per-image CSV, a markdown summary table,
DVC metrics JSON and a few ``input | output | target`` sample images.

Metric keys: ``<split>/<dataset>/<task>/<metric>`` per group, ``<split>/<task>/<metric>``
over datasets, ``<split>/psnr_y_mean`` / ``psnr_mean`` / ``ssim_y_mean`` over tasks and
``<split>/recognition_acc``.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from smartassign.config import Config
from smartassign.data import TASKS, task_label
from smartassign.data.images import write_png
from smartassign.data.manifest import (
    existing_manifest,
    load_pair,
    manifest_path,
    read_manifest_and_sha256,
)
from smartassign.data.real_checks import CheckSets
from smartassign.data.tensors import to_pixels, to_tensor
from smartassign.engine.tracking import sample_grid
from smartassign.metrics import psnr, ssim
from smartassign.model import SmartAssign
from smartassign.progress import progress as show

METRICS = ("psnr", "psnr_y", "ssim", "ssim_y", "input_psnr_y", "input_ssim_y")


@dataclass
class ImageScore:
    """Scores of one image."""

    split: str
    dataset: str
    task: str
    name: str
    psnr: float
    psnr_y: float
    ssim: float
    ssim_y: float
    input_psnr_y: float
    input_ssim_y: float
    recognised: str


@dataclass
class Evaluation:
    """All per-image scores of a split, the metrics derived from them and a few samples;
    ``extra`` holds further scored sets (the real check sets), written alongside."""

    split: str
    scores: list[ImageScore]
    metrics: dict[str, float]
    manifest_sha256: str
    samples: dict[str, np.ndarray]
    extra: list[Evaluation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Lines for the reader: check sets skipped, pairs left out."""

    def parts(self) -> list[Evaluation]:
        """This evaluation and its extra ones, in order."""
        return [self, *self.extra]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summarise(scores: list[ImageScore], split: str) -> dict[str, float]:
    """Means per (dataset, task), per task, over tasks, and the recognition accuracy; per
    group also the image count and how many images the model made worse on PSNR-Y."""
    groups: dict[str, list[ImageScore]] = defaultdict(list)
    for score in scores:
        groups[f"{split}/{score.dataset}/{score.task}"].append(score)
        groups[f"{split}/{score.task}"].append(score)
    metrics: dict[str, float] = {}
    for prefix, members in sorted(groups.items()):
        metrics[f"{prefix}/count"] = len(members)
        metrics[f"{prefix}/worse"] = sum(s.psnr_y < s.input_psnr_y for s in members)
        for metric in METRICS:
            metrics[f"{prefix}/{metric}"] = _mean([getattr(s, metric) for s in members])
    tasks = [task for task in TASKS if f"{split}/{task}" in groups]
    for metric in METRICS:
        metrics[f"{split}/{metric}_mean"] = _mean([metrics[f"{split}/{t}/{metric}"] for t in tasks])
    recognised = [s for s in scores if s.recognised]
    if recognised:
        metrics[f"{split}/recognition_acc"] = _mean(
            [float(s.recognised == s.task) for s in recognised]
        )
    return metrics


def split_sha256(cfg: Config, split: str) -> str:
    """sha256 of the manifest of ``split``: names the exact images a score was taken on."""
    path = existing_manifest(manifest_path(Path(cfg.data.root), split))
    return hashlib.sha256(path.read_bytes()).hexdigest()


Item = tuple[str, str, str, np.ndarray, np.ndarray]
"""``(dataset, task, name, degraded, clean)`` of one image to score."""


def _score(
    model: SmartAssign,
    items: Iterable[Item],
    split: str,
    sha256: str,
    samples_per_group: int,
) -> Evaluation:
    """Restore each item by its own task's decoder and score it."""
    model.eval()
    device = next(model.parameters()).device
    scores: list[ImageScore] = []
    sample_rows: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = defaultdict(list)
    for dataset, task, name, degraded, clean in items:
        label = torch.tensor([task_label(task)], device=device)
        output = model(to_tensor(degraded)[None].to(device), label)
        restored = to_pixels(output.for_tasks(label)[0])
        recognised = TASKS[int(output.logits.argmax(dim=1))] if output.logits is not None else ""
        scores.append(
            ImageScore(
                split=split,
                dataset=dataset,
                task=task,
                name=name,
                psnr=psnr(restored, clean),
                psnr_y=psnr(restored, clean, y_channel=True),
                ssim=ssim(restored, clean),
                ssim_y=ssim(restored, clean, y_channel=True),
                input_psnr_y=psnr(degraded, clean, y_channel=True),
                input_ssim_y=ssim(degraded, clean, y_channel=True),
                recognised=recognised,
            )
        )
        group = f"{dataset}_{task}"
        if len(sample_rows[group]) < samples_per_group:
            sample_rows[group].append((degraded, restored, clean))
    return Evaluation(
        split=split,
        scores=scores,
        metrics=summarise(scores, split),
        manifest_sha256=sha256,
        samples={group: sample_grid(rows, size=256) for group, rows in sample_rows.items()},
    )


@torch.no_grad()
def evaluate(
    model: SmartAssign,
    cfg: Config,
    split: str = "test",
    *,
    samples_per_group: int = 2,
    progress: bool = True,
) -> Evaluation:
    """Score ``model`` on every image of ``split`` (``data.root/manifests/<split>.jsonl``)
    of the tasks it restores (a single-task V4 model: its own task only)."""
    root = Path(cfg.data.root)
    all_records, manifest_sha256 = read_manifest_and_sha256(manifest_path(root, split))
    records = [r for r in all_records if r.task in model.routing.tasks]

    def items() -> Iterator[Item]:
        for record in show(records, desc=f"evaluate {split}", unit="img", enabled=progress):
            yield (record.dataset, record.task, record.name, *load_pair(record, root))

    return _score(model, items(), split, manifest_sha256, samples_per_group)


@torch.no_grad()
def evaluate_real(
    model: SmartAssign, checks: CheckSets, *, samples_per_group: int = 1, progress: bool = True
) -> Evaluation:
    """Score ``model`` on the real check pairs of the tasks it restores (split ``real``)."""
    pairs = [pair for pair in checks.pairs if pair.task in model.routing.tasks]

    def items() -> Iterator[Item]:
        for pair in show(pairs, desc="evaluate real", unit="img", enabled=progress):
            yield pair.dataset, pair.task, pair.name, pair.degraded, pair.clean

    evaluation = _score(model, items(), "real", checks.sha256, samples_per_group)
    evaluation.notes = [f"{issue.path}: {issue.reason} (left out)" for issue in checks.issues]
    return evaluation


def markdown_table(evaluation: Evaluation) -> str:
    """One row per (split, dataset, task) of the evaluation and its extra parts: count,
    PSNR / SSIM (RGB, Y), input PSNR-Y / SSIM-Y, gain and how many images got worse on PSNR-Y;
    then the recognition accuracy of each part and the notes."""
    lines = [
        "| split | dataset | task | images | PSNR | SSIM | PSNR-Y | SSIM-Y | input PSNR-Y "
        "| input SSIM-Y | gain Y | worse |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    footer = []
    for part in evaluation.parts():
        split, metrics = part.split, part.metrics
        for dataset, task in sorted({(s.dataset, s.task) for s in part.scores}):
            key = f"{split}/{dataset}/{task}"
            gain = metrics[f"{key}/psnr_y"] - metrics[f"{key}/input_psnr_y"]
            lines.append(
                f"| {split} | {dataset} | {task} | {int(metrics[f'{key}/count'])} "
                f"| {metrics[f'{key}/psnr']:.2f} | {metrics[f'{key}/ssim']:.4f} "
                f"| {metrics[f'{key}/psnr_y']:.2f} | {metrics[f'{key}/ssim_y']:.4f} "
                f"| {metrics[f'{key}/input_psnr_y']:.2f} "
                f"| {metrics[f'{key}/input_ssim_y']:.4f} | {gain:+.2f} "
                f"| {int(metrics[f'{key}/worse'])} |"
            )
        if f"{split}/recognition_acc" in metrics:
            accuracy = metrics[f"{split}/recognition_acc"]
            footer.append(f"Recognition accuracy ({split}): {accuracy:.3f}")
    notes = [note for part in evaluation.parts() for note in part.notes]
    return "\n".join([*lines, "", *footer, *(f"- {note}" for note in notes)]) + "\n"


def write_evaluation(evaluation: Evaluation, out_dir: str | Path) -> None:
    """``per_image.csv``, ``summary.md``, ``metrics.json`` and ``samples/*.png`` of the
    evaluation and its extra parts (the real check sets' hash as ``real_sha256``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores = [score for part in evaluation.parts() for score in part.scores]
    with (out / "per_image.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(scores[0])))
        writer.writeheader()
        for score in scores:
            writer.writerow(
                {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(score).items()}
            )
    (out / "summary.md").write_text(markdown_table(evaluation))
    metrics: dict[str, float | str] = {}
    for part in evaluation.parts():
        metrics.update({key: round(value, 4) for key, value in part.metrics.items()})
        metrics[f"{part.split}_sha256" if part is not evaluation else "manifest_sha256"] = (
            part.manifest_sha256
        )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    for part in evaluation.parts():
        prefix = "" if part is evaluation else f"{part.split}_"
        for group, grid in part.samples.items():
            write_png(out / "samples" / f"{prefix}{group}.png", grid)


def log_to_mlflow(
    evaluation: Evaluation, cfg: Config, model_uri: str, real_root: Path | None = None
) -> tuple[str, str] | None:
    """Log ``evaluation`` as an MLflow ``evaluate`` run of the logged model behind
    ``model_uri``: its split's manifest as the dataset input and its metrics linked to
    the model and that dataset, the real check sets (``real_root``) likewise
    (:mod:`smartassign.model_metrics`). Returns ``(run id, model id)``, or ``None`` when
    ``model_uri`` has no logged model."""
    from mlflow.exceptions import MlflowException

    from smartassign.engine.tracking import client
    from smartassign.model_metrics import REAL_DATASET, log_evaluation, model_id_of

    model_id = model_id_of(model_uri)
    if model_id is None:
        return None
    try:
        client().get_logged_model(model_id)
    except MlflowException:  # logged to another tracking store
        return None
    manifest = manifest_path(Path(cfg.data.root), evaluation.split)
    sets = [(evaluation.split, evaluation.manifest_sha256, manifest, evaluation.metrics)]
    sets += [
        (REAL_DATASET, part.manifest_sha256, real_root or manifest, part.metrics)
        for part in evaluation.extra
    ]
    return log_evaluation(cfg.registry.experiment, model_id, sets), model_id
