"""Training and inference speed of SmartAssign on one CUDA GPU; writes JSON.

    python benchmarks/gpu.py [--params params.yaml] [--out benchmarks/results/gpu.json]
                             [--steps 40] [--budget 210] [--train-epochs 2]
                             [--device cuda|cpu] [--crops 256] [--sides 512 1024]
                             [--no-compile]

Measures, within ``--budget`` seconds (about 4 minutes with the start-up):

- the device's ceilings: a large bfloat16 and a float32 (TF32 off) matrix product;
- training steps exactly as training takes them (``Optimisation.step``: Eq. 19, backward,
  clipping, fused Adam with the finiteness check on the device, schedule, EMA) on random
  batches already on the GPU, at the paper's crops (batch 4 of 256 x 256), at batch 16 of
  256 and at the shipped crops (``train.batch_size`` of ``data.crop_size``): images per
  second, peak GPU memory, and achieved TFLOP/s (3 x the forward FLOPs of
  ``smartassign model summary`` per image) against the measured bfloat16 ceiling, in
  float32, bfloat16 autocast and bfloat16 with channels-last, and (last, as compiling
  takes a minute or more) float32 and bfloat16 with ``torch.compile``;
- forward passes (batch 1, no grad) at 512 x 512 and 1024 x 1024, float32 and bfloat16;
- ``--train-epochs`` epochs of the training loop on the synthetic default (prepared small
  into a temporary folder) with ``train.device: cuda``: through ``smartassign train``
  (Ray Train) when Ray and MLflow are installed, else the same worker loop in this process;
  then the last state is saved as a checkpoint and loaded in a process that sees no GPU;
- with two or more GPUs and Ray installed: a training epoch with 1 and with all workers.

Timing: CUDA is synchronised only around each timed block of ``--steps`` steps (a step
itself never waits for the device); medians of three blocks after warm-up. ``--device
cpu`` with small ``--crops``, ``--sides`` and ``--matmul-side`` runs every part on the CPU
(the test suite does, to keep the script working); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from reporting import write_report

from smartassign.builder import build_model
from smartassign.config import Config, load_config
from smartassign.engine.devices import machine
from smartassign.engine.step import Optimisation
from smartassign.model.summary import summarize


class Budget:
    """Seconds left of ``--budget``; a measurement that would start past it is skipped."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def _median_block(fn: Any, device: torch.device, steps: int, warmup: int, blocks: int = 3) -> float:
    """Median seconds per call of ``fn`` over ``blocks`` blocks of ``steps`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(blocks):
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def matmul_ceilings(device: torch.device, side: int) -> dict[str, float]:
    """TFLOP/s of a ``side``-cubed matrix product in bfloat16 and in float32 (TF32 off)."""
    result = {}
    allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a = torch.randn(side, side, device=device, dtype=dtype)
        b = torch.randn(side, side, device=device, dtype=dtype)
        seconds = _median_block(lambda a=a, b=b: a @ b, device, steps=5, warmup=3)
        result[f"{name}_matmul_tflops"] = float(f"{2 * side**3 / seconds / 1e12:.4g}")
        del a, b
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    return result


def _kernels_per_step(step: Any, device: torch.device) -> int | None:
    """CUDA kernels one call of ``step`` launches (``torch.profiler``): at a few
    microseconds of host time each, what bounds a small network's step."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize(device)
    return sum(1 for event in prof.events() if event.device_type.name == "CUDA")


def train_throughput(
    cfg: Config,
    device: torch.device,
    shape: tuple[int, int],
    mode: str,
    steps: int,
    bf16_peak: float,
) -> dict[str, Any]:
    """Images per second, peak memory and TFLOP/s of training steps in ``mode``
    (``fp32``, ``bf16``, ``bf16_channels_last``, ``fp32_compile`` or ``bf16_compile``)."""
    batch, crop = shape
    torch.manual_seed(0)
    cfg = cfg.override({"data.crop_size": crop, "model.recognition_window": crop})
    channels_last = mode.endswith("channels_last")
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    amp_dtype = None if mode == "fp32" else torch.bfloat16
    model = build_model(cfg)
    macs = summarize(model, crop, crop, depth=1).macs
    model = model.to(device, memory_format=memory_format)
    optimisation = Optimisation.from_config(cfg, model, device, amp_dtype, total_steps=10**6)
    if mode.endswith("compile"):
        optimisation.net = torch.compile(model)
    degraded = torch.rand(batch, 3, crop, crop, device=device)
    degraded = degraded.contiguous(memory_format=memory_format)
    target = (degraded * 0.9).contiguous(memory_format=memory_format)
    task = torch.arange(batch, device=device) % 2
    _reset_peak(device)
    compile_start = time.perf_counter()
    optimisation.step(degraded, target, task, 0)
    _sync(device)
    first_step_s = time.perf_counter() - compile_start
    seconds = _median_block(
        lambda: optimisation.step(degraded, target, task, 0), device, steps=steps, warmup=3
    )
    kernels = _kernels_per_step(lambda: optimisation.step(degraded, target, task, 0), device)
    optimisation.check_finite("benchmark")
    images_per_s = batch / seconds
    tflops = 3 * 2 * macs * images_per_s / 1e12
    result = {
        "batch": batch,
        "crop": crop,
        "mode": mode,
        "step_ms": round(seconds * 1e3, 2),
        "images_per_s": round(images_per_s, 1),
        "peak_memory_mb": _peak_mb(device),
        "gflops_per_image": round(6 * macs / 1e9, 3),
        "achieved_tflops": round(tflops, 2),
        "share_of_bf16_matmul_ceiling": round(tflops / bf16_peak, 4) if bf16_peak else None,
        "kernels_per_step": kernels,
    }
    if mode.endswith("compile"):
        result["first_step_s"] = round(first_step_s, 1)
    return result


def forward_time(cfg: Config, device: torch.device, side: int, mode: str) -> dict[str, Any]:
    """Milliseconds of one no-grad forward pass of a ``side`` x ``side`` image."""
    model = build_model(cfg).to(device).eval()
    image = torch.rand(1, 3, side, side, device=device)
    _reset_peak(device)

    def forward() -> None:
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=mode == "bf16"):
            model(image)

    seconds = _median_block(forward, device, steps=3 if device.type == "cpu" else 10, warmup=2)
    return {
        "side": side,
        "mode": mode,
        "forward_ms": round(seconds * 1e3, 2),
        "us_per_pixel": round(seconds * 1e6 / side**2, 4),
        "peak_memory_mb": _peak_mb(device),
    }


def _small_synthetic(cfg: Config, root: Path) -> Config:
    from smartassign.data.prepare import prepare

    cfg = cfg.override(
        {
            "data.root": str(root),
            "data.synthetic.dead_leaves": 4,
            "data.synthetic.crops_per_photo": {"train": 6, "val": 4, "test": 2},
            "data.prepare_workers": min(8, os.cpu_count() or 1),
            "data.num_workers": 4,
        }
    )
    prepare(cfg, progress=False)
    return cfg


def _has(*modules: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in modules)


CPU_LOAD_CHECK = """
import sys, torch, yaml
from pathlib import Path
from smartassign.builder import build_model
from smartassign.config import config_from_dict
from smartassign.engine.checkpoint import CONFIG_FILE, load_state
assert not torch.cuda.is_available()
state = load_state(sys.argv[1])
model = build_model(config_from_dict(yaml.safe_load(Path(sys.argv[1], CONFIG_FILE).read_text())))
model.load_state_dict(state["model"])
devices = {t.device.type for t in state["model"].values()}
out = model.eval()(torch.rand(1, 3, 64, 64)).derain
print(f"loaded on {sorted(devices)}: output {tuple(out.shape)}")
"""


def train_loop(
    cfg: Config, device: torch.device, epochs: int, scratch: Path, with_ray: bool
) -> dict[str, Any]:
    """``epochs`` epochs with ``train.device`` set to ``device``, through Ray Train or in
    this process; the last state saved as a checkpoint and loaded where no GPU is
    visible."""
    from smartassign.engine.checkpoint import save_checkpoint
    from smartassign.engine.loop import LocalSession, WorkerRun

    cfg = _small_synthetic(cfg, scratch / "data").override(
        {"train.device": device.type, "train.epochs": epochs, "train.val_every": 1}
    )
    start = time.perf_counter()
    result: dict[str, Any] = {"epochs": epochs, "train.device": device.type}
    if with_ray:
        from smartassign.engine.run import train

        result["how"] = "smartassign train (Ray Train, one worker)"
        cfg = cfg.override(
            {
                "train.model_dir": str(scratch / "model"),
                "train.storage_path": str(scratch / "ray"),
                "train.resources_per_worker": {"CPU": 2},
            }
        )
        outcome = train(cfg, track=False)
        result["val"] = {k: round(v, 4) for k, v in outcome.metrics.items() if "val/" in k}
        checkpoints = sorted((scratch / "ray" / cfg.train.run_name).glob("checkpoint_*"))
        checkpoint_dir = checkpoints[-1] if checkpoints else None
    else:
        result["how"] = "the worker loop of smartassign train, in this process without Ray"
        run = WorkerRun(cfg, {"config": cfg.to_dict(), "session": LocalSession()})
        result["history"] = []
        for epoch in range(epochs):
            metrics = run.train_epoch(epoch)
            result["history"].append(
                {
                    "epoch": epoch + 1,
                    "loss": round(metrics["train/loss/total"], 5),
                    "seconds": round(metrics["train/epoch_seconds"], 2),
                    "val_psnr_y_mean": round(metrics["val/psnr_y_mean"], 3),
                }
            )
        result["device_of_weights"] = str(next(run.optimisation.model.parameters()).device)
        checkpoint_dir = scratch / "checkpoint"
        parts = run.optimisation.state_dicts()
        save_checkpoint(checkpoint_dir, cfg=cfg, progress=run.progress, parts=parts)
    result["seconds"] = round(time.perf_counter() - start, 1)
    if checkpoint_dir is not None:
        check = subprocess.run(
            [sys.executable, "-c", CPU_LOAD_CHECK, str(checkpoint_dir)],
            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
            capture_output=True,
            text=True,
            check=False,
        )
        result["checkpoint_loads_without_gpu"] = check.returncode == 0
        result["checkpoint_check"] = (check.stdout or check.stderr).strip().splitlines()[-1:]
    return result


def workers_comparison(cfg: Config, scratch: Path) -> dict[str, Any]:
    """Seconds of a training epoch with 1 and with every GPU of this node as workers."""
    gpus = torch.cuda.device_count()
    if gpus < 2 or not _has("ray", "mlflow"):
        why = f"{gpus} GPU" if gpus < 2 else "Ray / MLflow not installed"
        return {"gpus": gpus, "measured": False, "reason": why}
    from smartassign.engine.run import train

    cfg = _small_synthetic(cfg, scratch / "data-workers")
    result: dict[str, Any] = {"gpus": gpus, "measured": True}
    for workers in (1, gpus):
        outcome = train(
            cfg.override(
                {
                    "train.device": "cuda",
                    "train.num_workers": workers,
                    "train.epochs": 2,
                    "train.val_every": 2,
                    "train.run_name": f"workers-{workers}",
                    "train.model_dir": str(scratch / f"model-{workers}"),
                    "train.storage_path": str(scratch / "ray"),
                    "train.resources_per_worker": {"CPU": 2},
                }
            ),
            track=False,
        )
        result[f"epoch_seconds_{workers}_workers"] = round(
            outcome.metrics["train/epoch_seconds"], 2
        )
    return result


def _measure_train(
    report: dict[str, Any],
    cfg: Config,
    device: torch.device,
    shape: tuple[int, int],
    mode: str,
    steps: int,
    bf16_peak: float,
) -> None:
    """Append one training measurement to ``report["train"]``; a compilation that fails
    is recorded with its error instead of ending the benchmark."""
    try:
        entry = train_throughput(cfg, device, shape, mode, steps, bf16_peak)
    except Exception as error:  # torch.compile's toolchain may be missing on a machine
        if not mode.endswith("compile"):
            raise
        message = str(error).strip().splitlines()
        entry = {"batch": shape[0], "crop": shape[1], "mode": mode, "error": message[:1]}
    print(f"train {entry}", file=sys.stderr, flush=True)
    report["train"].append(entry)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="benchmarks/results/gpu.json")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--steps", type=int, default=40, help="steps per timed block")
    parser.add_argument("--budget", type=float, default=210, help="seconds for all of it")
    parser.add_argument("--train-epochs", type=int, default=2)
    parser.add_argument("--crops", type=int, default=256, help="the paper's crop side")
    parser.add_argument("--sides", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--matmul-side", type=int, default=8192)
    parser.add_argument(
        "--no-compile", action="store_true", help="leave out the torch.compile measurements"
    )
    parser.add_argument(
        "--loop",
        default="auto",
        choices=["auto", "ray", "in-process"],
        help="how the training loop runs: auto = Ray Train where Ray and MLflow are installed",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device visible to torch", file=sys.stderr)
        return 2
    budget = Budget(args.budget)
    cfg = load_config(args.params)
    report: dict[str, Any] = {"params_file": args.params, "device": args.device}
    report["machine"] = machine()
    if device.type == "cuda":
        report["machine"].update(
            cuda=torch.version.cuda,
            capability=".".join(map(str, torch.cuda.get_device_capability())),
            bf16_supported=torch.cuda.is_bf16_supported(),
            gpus=torch.cuda.device_count(),
        )
    report["ceilings"] = matmul_ceilings(device, args.matmul_side)
    bf16_peak = report["ceilings"]["bf16_matmul_tflops"]
    paper, large = (4, args.crops), (16, args.crops)
    shipped = (cfg.train.batch_size, cfg.data.crop_size)
    modes = ("fp32", "bf16", "bf16_channels_last")
    plan = [(shape, mode) for shape in (paper, large, shipped) for mode in modes]
    report["train"], skipped = [], []
    for shape, mode in plan:
        if budget.left() < 30:
            skipped.append(f"train {shape[0]}x{shape[1]} {mode}")
            continue
        _measure_train(report, cfg, device, shape, mode, args.steps, bf16_peak)
    report["forward"] = []
    for side in args.sides:
        for mode in ("fp32", "bf16"):
            entry = forward_time(cfg, device, side, mode)
            print(f"forward {entry}", file=sys.stderr, flush=True)
            report["forward"].append(entry)
    with tempfile.TemporaryDirectory(prefix="smartassign-gpu-") as scratch:
        with_ray = args.loop == "ray" or (args.loop == "auto" and _has("ray", "mlflow"))
        report["train_loop"] = train_loop(cfg, device, args.train_epochs, Path(scratch), with_ray)
        print(f"train loop {report['train_loop']}", file=sys.stderr, flush=True)
        report["workers"] = workers_comparison(cfg, Path(scratch))
    compiled = () if args.no_compile else ("fp32_compile", "bf16_compile")
    for mode in compiled:  # last: compiling takes a minute or more
        if budget.left() < 90:
            skipped.append(f"train {paper[0]}x{paper[1]} {mode}")
            continue
        _measure_train(report, cfg, device, paper, mode, args.steps, bf16_peak)
    report["skipped_for_budget"] = skipped
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
