"""The benchmark scripts still run against the library (they are not imported elsewhere)."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

from smartassign.config import load_config
from tests.engine_fixtures import TINY_BATCH

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The script as a module; on ``sys.path`` so spawned pool workers can import it too."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module(name)


def test_training_benchmark_times_the_worker_epochs_with_and_without_ray(
    ray_session, tiny_config_file, tmp_path, monkeypatch
):
    bench = _load("train", monkeypatch)
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
    assert report["ray_overhead_ratio"] > 0
    assert len(report["plain_epoch_s_before_after"]) == 2
    shares = report["ray_run_machine_share"]
    assert shares["training_worker"] > 0
    assert 0 < sum(shares.values()) <= 1.05
    assert report["machine"]["cpu_count"] >= 1


def test_process_cpu_counts_a_child_in_the_group_of_its_command_line(monkeypatch):
    process_cpu = _load("process_cpu", monkeypatch)
    burn = (
        "import sys, time\nend = time.process_time() + 0.4\n"
        "while time.process_time() < end: pass\nprint('burnt', flush=True)\nsys.stdin.read()"
    )
    # The child outlives the block (waiting on stdin), so the closing sample sees it however
    # busy the machine is; a child that ends inside the block is only seen by the sampler.
    child_args = [sys.executable, "-c", burn]
    with subprocess.Popen(child_args, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
        with process_cpu.ProcessCpu(
            lambda command: "burner" if "process_time" in command else "other", interval=0.05
        ) as cpu:
            assert child.stdout.readline() == b"burnt\n"
        child.stdin.close()
    assert cpu.seconds()["burner"] == pytest.approx(0.4, abs=0.15)
    assert cpu.machine_share()["burner"] <= 1.0


def test_process_cpu_keeps_the_group_of_a_process_whose_command_line_empties_on_exit(
    monkeypatch,
):
    process_cpu = _load("process_cpu", monkeypatch)

    class Exiting:
        """A child read as the worker, then (exiting, memory gone) with an empty command."""

        pid = 7
        reads = iter([(["ray::RayTrainWorker"], 1.0), (["ray::RayTrainWorker"], 2.0), ([], 3.0)])

        def __init__(self) -> None:
            self.command, self.used = next(self.reads)

        def cmdline(self) -> list[str]:
            return self.command

        def cpu_times(self):
            return SimpleNamespace(user=self.used, system=0.0)

    class Me:
        def children(self, recursive: bool) -> list[Exiting]:
            return [Exiting()]

    monkeypatch.setattr(process_cpu.psutil, "Process", Me)
    cpu = process_cpu.ProcessCpu(lambda command: "worker" if "Worker" in command else "other")
    cpu._sample(baseline=True)
    cpu._sample(baseline=False)
    cpu._sample(baseline=False)
    assert cpu.seconds() == {"worker": 2.0}


def test_learning_speed_benchmark_records_a_point_per_epoch_of_the_worker_loop(
    tiny_config_file, tmp_path, monkeypatch
):
    bench = _load("learning_speed", monkeypatch)
    out = tmp_path / "learning_speed.json"
    params = str(tiny_config_file("speed"))
    argv = ["--params", params, "--steps", "4", "--every", "2", "--setting", "tiny={}"]
    assert bench.main([*argv, "--out", str(out)]) == 0
    curve = json.loads(out.read_text())["settings"]["tiny"]["curve"]
    assert [point["step"] for point in curve] == [2, 4]
    assert all(math.isfinite(point["rain_gain_db"]) for point in curve)
    with pytest.raises(SystemExit):
        bench.main(["--params", params, "--steps", "3", "--every", "2"])


def test_data_loader_benchmark_reads_the_prepared_pairs(
    tiny_config_file, tiny_data, tmp_path, monkeypatch
):
    bench = _load("data_loader", monkeypatch)
    out = tmp_path / "data_loader.json"
    argv = ["--params", str(tiny_config_file("loader")), "--data-root", str(tiny_data)]
    argv += ["--crop", "32", "--workers", "0", "--samples", "8", "--repeats", "2"]
    assert bench.main([*argv, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["prepare_s"] is None  # the prepared tiny data was used, not a new one
    assert len(report["pass_s"]) == 2
    assert report["samples_per_s"] > 0


def test_model_benchmark_writes_forward_and_training_step_timings(
    tiny_config_file, tmp_path, monkeypatch
):
    bench = _load("model", monkeypatch)
    out = tmp_path / "model.json"
    params = tiny_config_file("model", amp=True, amp_dtype="bfloat16")
    argv = ["--params", str(params), "--device", "cpu", "--repeats", "2"]
    argv += ["--threads", "1", "--forward-sizes", "32", "--train-batches", "2x32"]
    assert bench.main([*argv, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["parameters"] > 0
    assert report["train_precision"] == "bfloat16 autocast"  # and float32 to compare with
    for label in ("forward_32", "train_step_b2_32", "train_step_b2_32_float32"):
        timing = report[label]
        assert timing["repeats"] == 2
        assert 0 < timing["min_s"] <= timing["median_s"] <= timing["max_s"]
        assert timing["peak_memory_mb"] > 0
    assert "forward_256" not in report
    with pytest.raises(SystemExit):
        bench.main([*argv, "--train-batches", "2by32"])


def test_inference_benchmark_measures_tiles_against_the_whole_pass(
    tiny_config_file, tmp_path, monkeypatch
):
    bench = _load("inference", monkeypatch)
    out = tmp_path / "inference.json"
    argv = ["--params", str(tiny_config_file("inference")), "--repeats", "1", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        sizes = ["--megapixels", "0.1,0.6"]  # one tile; several tiles of 512
        assert (
            bench.main([*argv, "--small-tiles", "96/48", *sizes, "--no-export", "--out", str(out)])
            == 0
        )
    finally:
        torch.set_num_threads(threads)
    report = json.loads(out.read_text())
    small, photo = report["tiles"]
    assert (small["image"], small["tile_size"], small["tile_overlap"]) == ("200x300", 96, 48)
    assert photo["image"] == "854x1280"
    for row in (small, photo):
        assert 0 < row["image_max_abs_diff"] < 1e-3, row
        assert 0 < row["tile_max_abs_diff"] < 0.05, row
        assert row["whole_s"] > 0 and row["image_s"] > 0 and row["tile_s"] > 0
    one_tile, tiled = report["per_pixel"]
    assert one_tile["megapixels"] == pytest.approx(0.1, abs=0.01) and tiled["megapixels"] > 0.5
    assert one_tile["tile_vs_image_psnr"] is None  # one tile: both modes are the whole pass
    assert tiled["tile_vs_image_psnr"] > 20
    for row in (one_tile, tiled):
        assert row["whole_us_per_px"] > 0 and row["peak_rss_mb"] > 0
        for mode in ("image", "tile"):
            assert row[f"{mode}_ratio"] == pytest.approx(
                row[f"{mode}_us_per_px"] / row["whole_us_per_px"], rel=0.01
            )
    assert report["real_pairs"] is None  # the tiny config names no real data
    assert "export" not in report


def test_inference_benchmark_scores_both_tiled_modes_on_real_pairs(
    tiny_config_file, real_data_dir, monkeypatch
):
    bench = _load("inference", monkeypatch)
    params = str(tiny_config_file("real"))
    cfg = load_config(params).override(
        {"evaluate.real_data": str(real_data_dir), "evaluate.real_sets": ["Rain12"]}
    )
    with torch.inference_mode():
        rows = bench._real_pairs(bench._seeded_model(params), cfg, 96, 32)
    row = rows["Rain12"]
    assert row["pairs"] == 12 and (row["tile_size"], row["tile_overlap"]) == (96, 32)
    assert row["input_psnr_y"] == pytest.approx(30.14, abs=0.01)  # Rain12's own inputs
    assert row["image_psnr_y"] == pytest.approx(row["whole_psnr_y"], abs=0.05)
    assert abs(row["tile_psnr_y"] - row["whole_psnr_y"]) < 1.0


def test_gpu_benchmark_runs_every_part_on_the_cpu(tiny_config_file, tmp_path, monkeypatch):
    """benchmarks/gpu.py with ``--device cpu`` and small sizes: the code the GPU run uses,
    its in-process training loop and the checkpoint loaded without a GPU included."""
    bench = _load("gpu", monkeypatch)
    out = tmp_path / "gpu.json"
    params = str(tiny_config_file("gpu"))
    small = ["--steps", "1", "--crops", "48", "--sides", "48", "--matmul-side", "64"]
    argv = ["--params", params, "--device", "cpu", *small, "--loop", "in-process"]
    threads = torch.get_num_threads()
    try:
        assert bench.main([*argv, "--no-compile", "--budget", "900", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads(out.read_text())
    modes = {(entry["batch"], entry["crop"], entry["mode"]) for entry in report["train"]}
    assert (4, 48, "bf16_channels_last") in modes and (TINY_BATCH, 32, "fp32") in modes
    assert (16, 48, "fp32") in modes
    assert report["skipped_for_budget"] == []
    assert len(report["train"]) == 9 and not any("compile" in e["mode"] for e in report["train"])
    assert all(entry["images_per_s"] > 0 for entry in report["train"])
    assert [(f["side"], f["mode"]) for f in report["forward"]] == [(48, "fp32"), (48, "bf16")]
    loop = report["train_loop"]
    assert [point["epoch"] for point in loop["history"]] == [1, 2]
    assert loop["checkpoint_loads_without_gpu"], loop["checkpoint_check"]
    assert report["workers"] == {"gpus": 0, "measured": False, "reason": "0 GPU"}
