"""How fast the restoration learns: validation PSNR-Y gain over the input after N steps.

    python benchmarks/learning_speed.py [--steps 200] [--every 100] [--params params.yaml]
        [--setting NAME=JSON ...] [--out benchmarks/results/learning_speed.json]

Each setting is params.yaml plus a JSON object of dotted overrides, e.g.
``--setting 'paper recognition weight={"loss.recog_weight": 1.0}'``. Without ``--setting``
it compares the shipped params with the paper's recognition weight (Eq. 19, weight 1).
Settings train in parallel, one process and one torch thread each, without Ray: the
training worker loop itself (model, loss, optimiser, schedule, EMA, data) in epochs of
``--every`` steps, on the prepared data of ``data.root`` (run ``smartassign prepare``
first). After each such epoch the model the loop validates (the EMA weights when
``train.ema_decay`` > 0) restores the validation split and the mean PSNR-Y gain over the
degraded input is recorded per task, with the recognition accuracy. Prints and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time

from reporting import write_report

from smartassign.config import Config, load_config
from smartassign.data import TASKS
from smartassign.engine.devices import machine
from smartassign.engine.loop import LocalSession, WorkerRun

DEFAULT_SETTINGS = {"shipped params": {}, "paper recognition weight": {"loss.recog_weight": 1.0}}


def _run(args: tuple[Config, int, int]) -> list[dict[str, float]]:
    """One setting: the worker loop in this process, one torch thread, epochs of ``every``
    steps, so each epoch's validation (of the EMA weights, when on) is one point."""
    cfg, steps, every = args
    cfg = cfg.override(
        {
            "train.epochs": steps // every,
            "data.samples_per_epoch": every * cfg.train.batch_size,
            "train.resources_per_worker": {"CPU": 1},
            "train.checkpoint_every_steps": 0,
            "train.val_every": 1,
        }
    )
    run = WorkerRun(cfg, {"session": LocalSession()})
    points = []
    start = time.perf_counter()
    for epoch in range(cfg.train.epochs):
        metrics = run.train_epoch(epoch)
        point = {"step": run.progress.global_step, "seconds": round(time.perf_counter() - start, 1)}
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
    if args.every < 1 or args.steps < args.every or args.steps % args.every:
        parser.error(
            f"--steps ({args.steps}) must be a positive multiple of --every ({args.every})"
        )
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
        "machine": machine(),
        "steps": args.steps,
        "batch_size": base.train.batch_size,
        "crop_size": base.data.crop_size,
        "settings": {
            name: {"overrides": overrides, "curve": curve}
            for (name, overrides), curve in zip(settings.items(), curves, strict=True)
        },
    }
    write_report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
