"""How fast the restoration learns: validation PSNR-Y gain over the input after N steps.

    python benchmarks/learning_speed.py [--steps 200] [--every 100] [--params params.yaml]
        [--setting NAME=JSON ...] [--out benchmarks/results/learning_speed.json]

Each setting is params.yaml plus a JSON object of dotted overrides, e.g.
``--setting 'paper recognition weight={"loss.recog_weight": 1.0}'``. Without ``--setting``
it compares the shipped params with the paper's recognition weight (Eq. 19, weight 1).
Settings train in parallel, one process and one torch thread each, in-process (no Ray):
the same model, loss, optimiser, schedule and data as the training loop, on the prepared
data of ``data.root`` (run ``smartassign prepare`` first). Every ``--every`` steps each
setting's model restores the validation split and the mean PSNR-Y gain over the degraded
input is recorded per task, with the recognition accuracy. Prints and writes JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from smartassign.config import Config, load_config
from smartassign.data import TASKS
from smartassign.data.dataset import build_dataloader
from smartassign.engine.schedule import LearningRateSchedule
from smartassign.engine.validation import validate
from smartassign.losses import SmartAssignLoss
from smartassign.model import SmartAssign

DEFAULT_SETTINGS = {"shipped params": {}, "paper recognition weight": {"loss.recog_weight": 1.0}}


def _batches(loader: torch.utils.data.DataLoader) -> Iterator[dict[str, Any]]:
    epoch = 0
    while True:
        loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _run(args: tuple[Config, int, int]) -> list[dict[str, float]]:
    cfg, steps, every = args
    torch.set_num_threads(1)
    torch.manual_seed(cfg.train.seed)
    train = build_dataloader(cfg, "train")
    val = build_dataloader(cfg, "val")
    model = SmartAssign.from_config(cfg)
    criterion = SmartAssignLoss(cfg.loss)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], cfg.train.lr)
    schedule = LearningRateSchedule(optimizer, cfg.train, steps)
    points = []
    start = time.perf_counter()
    for step, batch in enumerate(itertools.islice(_batches(train), steps), start=1):
        task = batch["task"].view(-1)
        terms = criterion(model(batch["input"]), batch["input"], batch["target"], task)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        if cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        schedule.after_step()
        if step % every == 0 or step == steps:
            metrics = validate(model, val, torch.device("cpu"))
            point = {"step": step, "seconds": round(time.perf_counter() - start, 1)}
            for name in TASKS:
                gain = metrics[f"val/{name}/psnr_y"] - metrics[f"val/{name}/input_psnr_y"]
                point[f"{name}_gain_db"] = round(gain, 2)
            point["recognition_acc"] = round(metrics.get("val/recognition_acc", float("nan")), 3)
            points.append(point)
            print(json.dumps({"pid": os.getpid(), **point}), flush=True)
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps per setting")
    parser.add_argument("--every", type=int, default=100, help="validate every N steps")
    parser.add_argument(
        "--setting", action="append", default=[], metavar="NAME=JSON", help="a setting"
    )
    parser.add_argument("--out", default="benchmarks/results/learning_speed.json")
    args = parser.parse_args(argv)
    settings = dict(DEFAULT_SETTINGS)
    if args.setting:
        settings = {}
        for item in args.setting:
            name, _, overrides = item.partition("=")
            settings[name] = json.loads(overrides or "{}")
    base = load_config(args.params).override({"data.num_workers": 0})
    configs = [base.override(overrides) for overrides in settings.values()]
    with multiprocessing.get_context("spawn").Pool(len(configs)) as pool:
        curves = pool.map(_run, [(cfg, args.steps, args.every) for cfg in configs])
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor()}",
        "torch": torch.__version__,
        "steps": args.steps,
        "batch_size": base.train.batch_size,
        "crop_size": base.data.crop_size,
        "settings": {
            name: {"overrides": overrides, "curve": curve}
            for (name, overrides), curve in zip(settings.items(), curves, strict=True)
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
