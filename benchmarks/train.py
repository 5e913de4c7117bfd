"""Training throughput and Ray overhead; writes JSON.

    python benchmarks/train.py [--params params.yaml] [--samples N] [--epochs 5]

Runs the same training epochs twice on the prepared data (``smartassign prepare`` first):
once as the worker loop's epochs in this process without Ray, once under ``TorchTrainer``
with one worker holding all of ``train.resources_per_worker``. ``--samples`` defaults to
``data.samples_per_epoch`` (the shipped epoch). Reports training images/s and the
Ray overhead ratio = median epoch time under Ray / median epoch time in plain PyTorch
(target <= 1.05). Epoch times exclude validation in both.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from reporting import write_report

from smartassign.config import load_config
from smartassign.engine.checkpoint import load_state
from smartassign.engine.devices import machine
from smartassign.engine.loop import LocalSession, WorkerRun
from smartassign.engine.run import fit


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
    parser.add_argument("--epochs", type=int, default=5)
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
        plain, plain_steps = plain_epochs(cfg, args.epochs)
        print(f"plain PyTorch epochs: {[round(t, 2) for t in plain]}", file=sys.stderr)
        result, _ = fit(cfg, track=False)
        with result.checkpoint.as_directory() as directory:
            progress = load_state(Path(directory))["progress"]
        ray_times = [epoch["train/epoch_seconds"] for epoch in progress["history"]]
        print(f"TorchTrainer epochs: {[round(t, 2) for t in ray_times]}", file=sys.stderr)
    # the first epoch of each includes warm-up (allocator, data workers): drop it
    plain_median = statistics.median(plain[1:] or plain)
    ray_median = statistics.median(ray_times[1:] or ray_times)
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
        "ray_epoch_s": round(ray_median, 3),
        "train_images_per_s": round(samples / ray_median, 2),
        "plain_images_per_s": round(samples / plain_median, 2),
        "ray_overhead_ratio": round(ray_median / plain_median, 3),
        "machine": machine(),
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
