"""Training throughput and Ray overhead; writes JSON.

    python benchmarks/train.py [--params params.yaml] [--samples 64] [--epochs 2]

Runs the same training epochs twice on the prepared data (``smartassign prepare`` first):
once as a plain PyTorch loop in this process, once under ``TorchTrainer`` with one
worker holding all of ``train.resources_per_worker``. Reports training images/s and the
Ray overhead ratio = median epoch time under Ray / median epoch time in plain PyTorch
(target <= 1.05). Epoch times exclude validation in both.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from smartassign.config import load_config
from smartassign.data.dataset import build_dataloader
from smartassign.engine.checkpoint import load_state
from smartassign.engine.run import fit
from smartassign.engine.schedule import LearningRateSchedule
from smartassign.losses import SmartAssignLoss
from smartassign.model import SmartAssign


def plain_epochs(cfg, epochs: int) -> list[float]:
    """Epoch times of the worker loop's training steps, without Ray.

    Each step does what the worker's does: the forward pass routed by task (each decoder
    on its own task's samples), the loss, clipping, the learning-rate schedule and the EMA.
    """
    torch.manual_seed(cfg.train.seed)
    model = SmartAssign.from_config(cfg)
    criterion = SmartAssignLoss(cfg.loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    loader = build_dataloader(cfg, "train")
    schedule = LearningRateSchedule(optimizer, cfg.train, epochs * len(loader))
    ema = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay))
        if cfg.train.ema_decay > 0
        else None
    )
    times = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        start = time.perf_counter()
        for batch in loader:
            task = batch["task"].view(-1)
            optimizer.zero_grad(set_to_none=True)
            output = model(batch["input"], task)
            terms = criterion(output, batch["input"], batch["target"], task)
            terms.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip or math.inf)
            terms.as_floats()
            optimizer.step()
            schedule.after_step()
            if ema is not None:
                ema.update_parameters(model)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--samples", type=int, default=64, help="training samples per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/train.json")
    args = parser.parse_args()

    cpus = load_config(args.params).train.resources_per_worker.get("CPU", 1)
    torch.set_num_threads(int(cpus))
    with tempfile.TemporaryDirectory() as scratch:
        cfg = load_config(args.params).override(
            {
                "data.samples_per_epoch": args.samples,
                "train.epochs": args.epochs,
                "train.num_workers": 1,
                "train.run_name": "benchmark",
                "train.storage_path": str(Path(scratch) / "ray"),
                "train.model_dir": str(Path(scratch) / "model"),
            }
        )
        plain = plain_epochs(cfg, args.epochs)
        print(f"plain PyTorch epochs: {[round(t, 2) for t in plain]}", file=sys.stderr)
        result, _ = fit(cfg, track=False)
        with result.checkpoint.as_directory() as directory:
            history = load_state(Path(directory))["progress"]["history"]
        ray_times = [epoch["train/epoch_seconds"] for epoch in history]
        print(f"TorchTrainer epochs: {[round(t, 2) for t in ray_times]}", file=sys.stderr)
    # the first epoch of each includes warm-up (allocator, data workers): drop it
    plain_median = statistics.median(plain[1:] or plain)
    ray_median = statistics.median(ray_times[1:] or ray_times)
    report = {
        "params_file": args.params,
        "samples_per_epoch": args.samples,
        "batch_size": cfg.train.batch_size,
        "crop_size": cfg.data.crop_size,
        "loader_workers": cfg.data.num_workers,
        "torch_threads": torch.get_num_threads(),
        "plain_epoch_s": round(plain_median, 3),
        "ray_epoch_s": round(ray_median, 3),
        "train_images_per_s": round(args.samples / ray_median, 2),
        "plain_images_per_s": round(args.samples / plain_median, 2),
        "ray_overhead_ratio": round(ray_median / plain_median, 3),
        "torch": torch.__version__,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
