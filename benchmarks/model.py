"""Speed and memory of the SmartAssign network; writes JSON.

    python benchmarks/model.py [--params params.yaml] [--device auto|cpu|cuda] [--out PATH]

Measures parameters, MACs at 256x256, forward latency at 256x256 and 512x512 (batch 1,
no grad), and one training step as the training loop runs it (forward with each decoder on
its own task's samples, the full Eq. 19 loss, backward, Adam) at batch 4 of 128x128 crops
and at the shipped batch of 64 crops of 32x32. Each measurement runs in a fresh process,
so the reported peak memory (RSS on CPU, ``max_memory_allocated`` on CUDA) belongs to that
measurement alone.
Times are medians over ``--repeats`` runs after warm-up.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from smartassign.config import load_config
from smartassign.losses import SmartAssignLoss
from smartassign.model import SmartAssign
from smartassign.model.summary import summarize


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Any, device: torch.device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(task: str, params: str, device_name: str, repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device(device_name)
    cfg = load_config(params)
    model = SmartAssign.from_config(cfg).to(device)
    if task.startswith("forward"):
        size = int(task.removeprefix("forward"))
        model.eval()
        image = torch.rand(1, 3, size, size, device=device)

        def step() -> None:
            with torch.no_grad():
                model(image)

        times = _timed(step, device, warmup=2, repeats=repeats)
    else:
        model.train()
        criterion = SmartAssignLoss(cfg.loss).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
        batch, size = map(int, task.removeprefix("train").split("x"))
        degraded = torch.rand(batch, 3, size, size, device=device)
        target = torch.rand(batch, 3, size, size, device=device)
        task_labels = torch.arange(batch, device=device) % 2

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            terms = criterion(model(degraded, task_labels), degraded, target, task_labels)
            terms.total.backward()
            optimizer.step()

        times = _timed(step, device, warmup=2, repeats=repeats)
    return {
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "repeats": repeats,
        "peak_memory_mb": round(_peak_memory_mb(device), 1),
    }


def _in_fresh_process(*args: Any) -> dict:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_measure, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="benchmarks/results/model.json")
    args = parser.parse_args()
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"

    cfg = load_config(args.params)
    summary = summarize(SmartAssign.from_config(cfg), 256, 256, depth=1)
    result: dict[str, Any] = {
        "params_file": args.params,
        "variant": cfg.model.variant.value,
        "parameters": summary.parameters,
        "gmacs_256": round(summary.gmacs, 3),
        "gflops_256": round(2 * summary.gmacs, 3),
        "device": device,
        "device_name": (
            torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
        ),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }
    for task, label in (
        ("forward256", "forward_256"),
        ("forward512", "forward_512"),
        ("train4x128", "train_step_b4_128"),
        ("train64x32", "train_step_b64_32"),
    ):
        result[label] = _in_fresh_process(task, args.params, device, args.repeats, args.threads)
        print(f"{label}: {result[label]}", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
