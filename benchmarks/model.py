"""Speed and memory of the SmartAssign network; writes JSON.

    python benchmarks/model.py [--params params.yaml] [--device auto|cpu|cuda] [--out PATH]
                               [--forward-sizes 256 512] [--train-batches 4x128 64x32]

Measures parameters, MACs at 256x256, forward latency at 256x256 and 512x512 (batch 1,
no grad), and one training step exactly as training takes it (``Optimisation.step`` of
``smartassign.engine.step``: each decoder on its own task's samples, the full Eq. 19 loss,
backward, clipping, Adam, schedule, EMA; autocast as ``train.amp`` picks it on this device,
and again in float32 when that is something else) at batch 4 of 128x128 crops and at 64
crops of 32x32 (twice the shipped batch). Each measurement runs in
a fresh process, so the reported peak memory (RSS on CPU, ``max_memory_allocated`` on CUDA)
belongs to that measurement alone. Times are medians over ``--repeats`` runs after warm-up.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import time
from typing import Any

import torch
from reporting import write_report

from smartassign.builder import build_model
from smartassign.config import load_config
from smartassign.engine.devices import autocast_dtype, machine, precision_name
from smartassign.engine.step import Optimisation
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


def _measure(
    task: str, params: str, device_name: str, repeats: int, threads: int, amp: bool
) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device(device_name)
    cfg = load_config(params)
    model = build_model(cfg).to(device)
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
        amp_dtype = autocast_dtype(device.type, amp, cfg.train.amp_dtype)
        optimisation = Optimisation.from_config(cfg, model, device, amp_dtype, total_steps=1000)
        batch, size = map(int, task.removeprefix("train").split("x"))
        degraded = torch.rand(batch, 3, size, size, device=device)
        target = torch.rand(batch, 3, size, size, device=device)
        task_labels = torch.arange(batch, device=device) % 2

        def step() -> None:
            optimisation.step(degraded, target, task_labels, optimisation.scheduler.step)

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


def _batch_shape(text: str) -> tuple[int, int]:
    """``BxS`` (batch of B crops of SxS pixels) from the command line."""
    try:
        batch, size = (int(part) for part in text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not BxS, e.g. 64x32") from None
    if batch < 1 or size < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: batch and size must be positive")
    return batch, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="benchmarks/results/model.json")
    parser.add_argument(
        "--forward-sizes",
        type=int,
        nargs="+",
        default=[256, 512],
        metavar="SIDE",
        help="square image sides of the forward measurements (batch 1, no grad)",
    )
    parser.add_argument(
        "--train-batches",
        type=_batch_shape,
        nargs="+",
        default=[(4, 128), (64, 32)],
        metavar="BxS",
        help="training steps to time: B crops of SxS pixels",
    )
    args = parser.parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"

    cfg = load_config(args.params)
    summary = summarize(build_model(cfg), 256, 256, depth=1)
    result: dict[str, Any] = {
        "params_file": args.params,
        "variant": cfg.model.variant.value,
        "parameters": summary.parameters,
        "gmacs_256": round(summary.gmacs, 3),
        "gflops_256": round(2 * summary.gmacs, 3),
        "device": device,
        "threads": args.threads,
        "machine": machine(),
    }
    picked = autocast_dtype(device, cfg.train.amp, cfg.train.amp_dtype)
    result["train_precision"] = precision_name(picked)
    tasks = [(f"forward{side}", f"forward_{side}", False) for side in args.forward_sizes]
    for batch, side in args.train_batches:
        tasks.append((f"train{batch}x{side}", f"train_step_b{batch}_{side}", cfg.train.amp))
        if picked is not None:
            tasks.append((f"train{batch}x{side}", f"train_step_b{batch}_{side}_float32", False))
    for task, label, amp in tasks:
        result[label] = _in_fresh_process(
            task, args.params, device, args.repeats, args.threads, amp
        )
        print(f"{label}: {result[label]}", file=sys.stderr)
    write_report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
