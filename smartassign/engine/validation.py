"""Per-epoch validation: PSNR / SSIM (RGB and Y) per task and recognition accuracy.

Metric names (also used by MLflow, Ray Tune and DVC):
``val/<task>/psnr``, ``val/<task>/psnr_y``, ``val/<task>/ssim``, ``val/<task>/ssim_y``,
``val/<task>/input_psnr_y`` (the degraded input, for reference), ``val/recognition_acc``,
and the means over the tasks present, ``val/psnr_mean`` and ``val/psnr_y_mean``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import torch

from smartassign.config import Config, ConfigError
from smartassign.config.train import check_monitor
from smartassign.data import TASKS
from smartassign.data.manifest import manifest_path, read_manifest
from smartassign.engine.devices import autocast
from smartassign.metrics import psnr_batch, ssim_batch
from smartassign.model import SmartAssign


@torch.no_grad()
def validate(
    model: SmartAssign,
    batches: Iterable[dict],
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    prefix: str = "val",
) -> dict[str, float]:
    """Evaluate ``model`` on full images; each sample is restored by its own task's decoder."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    correct = total = 0
    for batch in batches:
        degraded = batch["input"].to(device)
        target = batch["target"].to(device)
        task = batch["task"].to(device).view(-1)
        with autocast(device, amp_dtype):
            output = model(degraded, task)
        restored = output.for_tasks(task).float().clamp(0, 1)
        scores = {
            "psnr": psnr_batch(restored, target),
            "psnr_y": psnr_batch(restored, target, y_channel=True),
            "ssim": ssim_batch(restored, target),
            "ssim_y": ssim_batch(restored, target, y_channel=True),
            "input_psnr_y": psnr_batch(degraded, target, y_channel=True),
        }
        for index, label in enumerate(task.tolist()):
            name = TASKS[label]
            counts[name] += 1
            for metric, values in scores.items():
                sums[f"{prefix}/{name}/{metric}"] += float(values[index])
        if output.logits is not None:
            correct += int((output.logits.argmax(dim=1) == task).sum())
            total += task.numel()
    model.train(was_training)
    if not counts:
        raise ValueError(f"{prefix}: no samples to validate on (empty split?)")
    metrics = {key: value / counts[key.split("/")[1]] for key, value in sorted(sums.items())}
    for metric in ("psnr", "psnr_y"):
        per_task = [metrics[f"{prefix}/{name}/{metric}"] for name in TASKS if counts[name]]
        metrics[f"{prefix}/{metric}_mean"] = sum(per_task) / len(per_task)
    if total:
        metrics[f"{prefix}/recognition_acc"] = correct / total
    return metrics


def check_training_data(cfg: Config) -> None:
    """Refuse, before Ray starts, training without prepared data or with an empty train
    split (every pair filtered out by ``max_pairs``, hold-outs or skipped files)."""
    if "://" in cfg.data.root:
        return
    path = manifest_path(Path(cfg.data.root), "train")
    if not path.is_file():
        raise ConfigError(
            f"data.root: no training manifest {path}; run `smartassign prepare` (or "
            "`dvc repro prepare`) for these params first"
        )
    if not read_manifest(path):
        raise ConfigError(
            f"data.datasets / data.synthetic: the train split in {path} has no pairs (all "
            "held out, limited by max_pairs or skipped: see report.json in data.root); "
            "give the training split pairs"
        )


def check_monitor_is_measured(cfg: Config) -> None:
    """Refuse, before Ray starts, a ``train.monitor`` of a task the val split lacks (the
    workers would fail on it after a whole epoch, once per allowed restart)."""
    path = manifest_path(Path(cfg.data.root), "val")
    if path.is_file():
        present = {record.task for record in read_manifest(path)}
        check_monitor(
            cfg.train.monitor,
            tasks=[task for task in cfg.model.tasks if task in present],
            recognition=True,
            scope=f"the val split ({path})",
        )
