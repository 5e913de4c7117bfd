"""Training on Ray Train with MLflow tracking: finishing, recovering, resuming, stopping."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from smartassign.config import Config
from smartassign.engine import tracking
from smartassign.engine.devices import autocast_dtype, precision_name
from smartassign.engine.loop import _progress, _ReportLineFilter
from smartassign.engine.run import RUN_STATE_FILE, fit, train
from smartassign.engine.step import NonFiniteLossError

from .engine_fixtures import steps_per_epoch

pytestmark = pytest.mark.slow

MONITOR = "val/psnr_y_mean"


def _run_state(cfg: Config) -> dict:
    path = Path(cfg.train.storage_path) / cfg.train.run_name / RUN_STATE_FILE
    return json.loads(path.read_text())


def _history(run_id: str, key: str = MONITOR) -> list[int]:
    return sorted(m.step for m in tracking.client().get_metric_history(run_id, key))


def test_two_workers_train_beat_the_input_and_log_a_loadable_model(tiny_config, mlflow_store):
    from smartassign.engine.run import export_model_dir
    from smartassign.model_io import load_model

    cfg = tiny_config("two_workers", epochs=4, num_workers=2)
    result = train(cfg)
    final = result.metrics
    assert len(result.history) == 4
    for task in ("rain", "snow"):
        assert final[f"val/{task}/psnr_y"] > final[f"val/{task}/input_psnr_y"], final
    assert _history(result.run_id) == [1, 2, 3, 4]
    params = tracking.client().get_run(result.run_id).data.params
    assert json.loads(params["train.num_workers"]) == 2
    tags = tracking.client().get_run(result.run_id).data.tags
    assert len(tags["data_manifest_sha256"]) == 64
    picked = autocast_dtype("cpu", cfg.train.amp, cfg.train.amp_dtype)  # as on this machine
    assert tags["train_precision"] == precision_name(picked)
    assert (result.model_dir / "model.pt").is_file()
    calibration = json.loads((result.model_dir / "calibration.json").read_text())
    assert calibration["images"] == {"rain": 1, "snow": 1}
    artifacts = {a.path for a in tracking.client().list_artifacts(result.run_id)}
    assert {"samples", "gates"} <= artifacts
    assert (result.model_dir / "mlflow_model_uri").read_text().startswith("models:/")

    loaded = load_model(f"runs:/{result.run_id}/model")
    in_memory = export_model_dir(result.checkpoint_dir, result.model_dir.parent / "again")
    image = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        expected, got = in_memory(image), loaded.eval()(image)
    torch.testing.assert_close(got.derain, expected.derain)
    torch.testing.assert_close(got.desnow, expected.desnow)
    torch.testing.assert_close(got.logits, expected.logits)


def test_worker_failure_restarts_from_the_last_checkpoint(tiny_config, mlflow_store, tmp_path):
    cfg = tiny_config("recover", epochs=3, num_workers=2, max_failures=1)
    marker = tmp_path / "failed_once"
    steps = steps_per_epoch(2)
    result = train(cfg, fault={"step": steps + 1, "marker": str(marker)})
    assert marker.is_file(), "the injected failure never fired"
    assert len(result.history) == 3
    state = torch.load(result.checkpoint_dir / "state.pt", weights_only=False)
    assert state["progress"]["resumes"] == 1
    assert state["progress"]["global_step"] == 3 * steps
    assert _history(result.run_id) == [1, 2, 3]
    assert _history(result.run_id, "train/loss/total") == [1, 2, 3]


def test_interrupted_run_continues_its_epoch_count(tiny_config, mlflow_store, tmp_path):
    cfg = tiny_config("interrupted", epochs=3, num_workers=1, max_failures=0)
    marker = tmp_path / "interrupt"
    with pytest.raises(Exception, match="injected failure"):
        fit(cfg, fault={"step": steps_per_epoch(1) + 1, "marker": str(marker)})
    run_id = _run_state(cfg)["mlflow_run_id"]
    assert _history(run_id) == [1]
    result = train(cfg)
    assert result.run_id == run_id
    assert _history(run_id) == [1, 2, 3]
    assert len(result.history) == 3
    assert _run_state(cfg)["completed"]


def test_nonfinite_loss_stops_and_keeps_the_last_checkpoint(tiny_config, mlflow_store):
    cfg = tiny_config("nonfinite", epochs=3, num_workers=1, max_failures=2)
    step = steps_per_epoch(1) + 1
    with pytest.raises(NonFiniteLossError, match=rf"step {step}: loss term charbonnier") as caught:
        fit(cfg, fault={"step": step, "nonfinite": True})
    assert "last good checkpoint is kept" in str(caught.value)
    run_dir = Path(cfg.train.storage_path) / cfg.train.run_name
    checkpoints = sorted(p for p in run_dir.glob("checkpoint_*") if p.is_dir())
    assert checkpoints, "no checkpoint kept"
    state = torch.load(checkpoints[-1] / "state.pt", weights_only=False)
    assert state["progress"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def _ray_must_not_start(monkeypatch) -> None:
    """Ray is up in this session (a fixture), so "before Ray starts" means before ``fit``
    asks Ray for anything: its entry points fail the test if reached."""
    import ray
    import ray.train.torch

    def started(*args, **kwargs):
        raise AssertionError("Ray was asked to start before the configuration was refused")

    monkeypatch.setattr(ray, "init", started)
    monkeypatch.setattr(ray.train.torch, "TorchTrainer", started)


def test_zero_workers_is_refused_before_ray_starts(tiny_config, monkeypatch):
    from smartassign.config import ConfigError

    _ray_must_not_start(monkeypatch)
    with pytest.raises(ConfigError, match=r"train\.num_workers: 0 is only for"):
        fit(tiny_config("zero", num_workers=0))


def test_monitor_of_a_task_the_val_split_lacks_is_refused_before_ray_starts(
    tiny_config, tiny_data, tmp_path, monkeypatch
):
    from smartassign.config import ConfigError

    root = tmp_path / "rain_only"
    (root / "manifests").mkdir(parents=True)
    lines = (tiny_data / "manifests" / "val.jsonl").read_text().splitlines()
    rain = [line for line in lines if json.loads(line)["task"] == "rain"]
    assert rain and len(rain) < len(lines)
    (root / "manifests" / "val.jsonl").write_text("\n".join(rain) + "\n")
    cfg = tiny_config("monitor", monitor="val/snow/psnr_y").override({"data.root": str(root)})
    _ray_must_not_start(monkeypatch)
    with pytest.raises(
        ConfigError, match=r"psnr_y is never measured: the val split .* covers rain only"
    ):
        fit(cfg)


def test_cluster_path_through_ray_address(tiny_config_file, tmp_path):
    """``ray start --head`` then ``smartassign train`` with ``RAY_ADDRESS``, as in README."""
    import ray

    ray.shutdown()  # `ray stop` below ends every Ray process on this machine
    port = 6400 + os.getpid() % 500
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'cluster.db'}"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.run(
        [
            "ray",
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert head.returncode == 0, head.stderr
    try:
        params = tiny_config_file("cluster", epochs=1, num_workers=1)
        run = subprocess.run(
            [sys.executable, "-m", "smartassign.cli", "train", "--params", str(params)],
            env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "token"},
            capture_output=True,
            text=True,
            timeout=400,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "Connecting to existing Ray cluster at address:" in run.stderr
        assert f":{port}..." in run.stderr
        assert "model written to" in run.stdout
    finally:
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_ray_report_lines_are_dropped_and_progress_reaches_the_process_stdout(capfd):
    def passes(message: str) -> bool:
        record = logging.LogRecord("ray.train", logging.INFO, __file__, 1, message, None, None)
        return _ReportLineFilter().filter(record)

    assert not passes("Reporting training result 3: TrainingReport(metrics={...}) from rank 0")
    assert passes("Started training worker group of size 1")
    _progress("epoch 1/2: loss 0.1000")
    assert capfd.readouterr().out.count("epoch 1/2: loss 0.1000") == 1
