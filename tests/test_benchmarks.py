"""The benchmark scripts still run against the library (they are not imported elsewhere)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.engine_fixtures import TINY_BATCH

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_benchmark_times_the_worker_epochs_with_and_without_ray(
    ray_session, tiny_config_file, tmp_path, monkeypatch
):
    bench = _load("train")
    out = tmp_path / "train.json"
    params = tiny_config_file("bench")
    argv = ["train.py", "--params", str(params), "--samples", "16", "--epochs", "2"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(out)])
    threads = torch.get_num_threads()
    try:
        bench.main()
    finally:
        torch.set_num_threads(threads)
    report = json.loads(out.read_text())
    assert report["samples_per_epoch"] == 16
    steps = 2 * math.ceil(16 / TINY_BATCH)  # every epoch trains all its steps, in both modes
    assert report["plain_steps"] == report["ray_steps"] == steps
    assert report["plain_epoch_s"] > 0
    assert report["ray_epoch_s"] > 0
    ratio = report["ray_epoch_s"] / report["plain_epoch_s"]
    assert report["ray_overhead_ratio"] == pytest.approx(ratio, rel=0.01)
