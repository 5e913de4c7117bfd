"""Training throughput and Ray overhead; writes JSON.

    python benchmarks/train.py [--params params.yaml] [--samples N] [--epochs 4]

Runs the same training epochs on the prepared data (``smartassign prepare`` first): as the
worker loop's epochs in this process without Ray, before and again after the same epochs
under ``TorchTrainer`` with one worker holding all of ``train.resources_per_worker`` (so a
drift of the machine's speed shows). ``--samples`` defaults to ``data.samples_per_epoch``
(the shipped epoch). Reports training images/s, the Ray overhead ratio = median over
epochs of (epoch i under Ray / mean of the plain epochs i before and after; the first
epoch left out as warm-up; target <= 1.05), and where the CPU went while the Ray run
lasted: the training worker against Ray's own processes, as shares of the machine.
Epoch times exclude validation in all.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from process_cpu import ProcessCpu
from reporting import write_report

from smartassign.config import load_config
from smartassign.engine.checkpoint import load_state
from smartassign.engine.devices import machine
from smartassign.engine.loop import LocalSession, WorkerRun
from smartassign.engine.run import fit, init_ray

RAY_PROCESS_GROUPS = {
    "RayTrainWorker": "training_worker",
    "TrainController": "train_controller",
    "gcs_server": "gcs_and_raylet",
    "raylet": "gcs_and_raylet",
    "dashboard": "dashboard",
}


def ray_process_group(command: str) -> str:
    """The group of a Ray process by its command line (``other``: idle workers, monitors)."""
    for marker, group in RAY_PROCESS_GROUPS.items():
        if marker in command:
            return group
    return "other"


def plain_epochs(cfg, epochs: int) -> tuple[list[float], int]:
    """The worker loop's epochs in this process without Ray: epoch times and steps taken.

    Each epoch ends as in the worker (validation, schedule, progress), outside the timing.
    """
    run = WorkerRun(cfg, {"session": LocalSession()})
    times = []
    for epoch in range(epochs):
        times.append(run.train_epoch(epoch)["train/epoch_seconds"])
    return times, run.progress.global_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument(
        "--samples", type=int, default=0, help="training samples per epoch (0: the params')"
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default="benchmarks/results/train.json")
    args = parser.parse_args()

    base = load_config(args.params)
    samples = args.samples or base.data.samples_per_epoch
    if samples <= 0:
        parser.error(
            f"data.samples_per_epoch is 0 in {args.params} (whole manifest): pass --samples N"
        )
    torch.set_num_threads(int(base.train.resources_per_worker.get("CPU", 1)))
    with tempfile.TemporaryDirectory() as scratch:
        cfg = base.override(
            {
                "data.samples_per_epoch": samples,
                "train.epochs": args.epochs,
                "train.num_workers": 1,
                "train.run_name": "benchmark",
                "train.storage_path": str(Path(scratch) / "ray"),
                "train.model_dir": str(Path(scratch) / "model"),
            }
        )
        before, plain_steps = plain_epochs(cfg, args.epochs)
        print(f"plain PyTorch epochs: {[round(t, 2) for t in before]}", file=sys.stderr)
        init_ray()
        with ProcessCpu(ray_process_group) as cpu:
            result, _ = fit(cfg, track=False)
        with result.checkpoint.as_directory() as directory:
            progress = load_state(Path(directory))["progress"]
        ray_times = [epoch["train/epoch_seconds"] for epoch in progress["history"]]
        print(f"TorchTrainer epochs: {[round(t, 2) for t in ray_times]}", file=sys.stderr)
        after, _ = plain_epochs(cfg, args.epochs)
        print(f"plain PyTorch epochs after: {[round(t, 2) for t in after]}", file=sys.stderr)
    # Epochs speed up within each run as the loader workers' caches of decoded pairs fill, so
    # epoch i under Ray is compared with the plain epochs i before and after it; the first
    # epoch of each run (warm-up: allocator, data workers) is left out.
    plain = [(first + second) / 2 for first, second in zip(before, after, strict=True)]
    kept = slice(1, None) if args.epochs > 1 else slice(None)
    plain_median = statistics.median(plain[kept])
    ray_median = statistics.median(ray_times[kept])
    ratio = statistics.median(
        ray / reference for ray, reference in zip(ray_times[kept], plain[kept], strict=True)
    )
    report = {
        "params_file": args.params,
        "samples_per_epoch": samples,
        "batch_size": cfg.train.batch_size,
        "crop_size": cfg.data.crop_size,
        "loader_workers": cfg.data.num_workers,
        "torch_threads": torch.get_num_threads(),
        "plain_steps": plain_steps,
        "ray_steps": progress["global_step"],
        "plain_epoch_s": round(plain_median, 3),
        "plain_epoch_s_before_after": [
            round(statistics.median(before[kept]), 3),
            round(statistics.median(after[kept]), 3),
        ],
        "ray_epoch_s": round(ray_median, 3),
        "train_images_per_s": round(samples / ray_median, 2),
        "plain_images_per_s": round(samples / plain_median, 2),
        "ray_overhead_ratio": round(ratio, 3),
        "epoch_s": {
            "plain_before": [round(t, 2) for t in before],
            "ray": [round(t, 2) for t in ray_times],
            "plain_after": [round(t, 2) for t in after],
        },
        "ray_run_wall_s": round(cpu.wall_s, 1),
        "ray_run_machine_share": {
            group: round(share, 4) for group, share in sorted(cpu.machine_share().items())
        },
        "machine": machine(),
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
