"""The per-worker training loop run by ``ray.train.torch.TorchTrainer``.

Each worker builds the model, wraps it for DDP (``prepare_model``) when there are several
workers, draws its own share of training crops, and optimises Eq. 19 step by step
(``smartassign.engine.step``: Adam, gradient clipping, optional bf16/fp16 autocast and EMA
weights). Every epoch (and every
``train.checkpoint_every_steps`` steps) rank 0 writes a checkpoint and every rank reports
it to Ray, so a restarted worker group resumes from the latest one. Rank 0 validates every
``train.val_every`` epochs and after the last one, and logs to MLflow; each epoch's metrics
are logged exactly once, also across restarts.
"""

from __future__ import annotations

import itertools
import logging
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smartassign.builder import build_model
from smartassign.config import Config, config_from_dict
from smartassign.config.train import TRAINING_LOSS
from smartassign.data.dataset import build_dataloader
from smartassign.data.tensors import to_pixels
from smartassign.engine import tracking
from smartassign.engine.checkpoint import (
    Progress,
    load_state,
    restore_rng_state,
    save_checkpoint,
)
from smartassign.engine.devices import (
    DeviceKind,
    autocast_dtype,
    local_device,
    precision_name,
    worker_device,
)
from smartassign.engine.step import NonFiniteLossError, Optimisation
from smartassign.engine.validation import validate


class _ReportLineFilter(logging.Filter):
    """Drops Ray Train's "Reporting training result" INFO line.

    Ray Train logs every ``ray.train.report`` with its whole metrics dict, one long line per
    epoch; the epoch line of this loop and MLflow carry the same numbers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Reporting training result")


_REPORT_LINE_FILTER = _ReportLineFilter()


def _quiet_report_lines() -> None:
    for handler in logging.getLogger().handlers:
        if _REPORT_LINE_FILTER not in handler.filters:
            handler.addFilter(_REPORT_LINE_FILTER)


def _progress(message: str) -> None:
    """Print a progress line once.

    Ray Train replaces ``print`` in its workers by one that logs the line and, as the
    workers' ``sys.stdout`` is wrapped, also prints it: every line reached the driver twice.
    The process's own stdout carries it once.
    """
    print(message, file=sys.__stdout__, flush=True)


class InjectedFault(RuntimeError):
    """Raised on purpose by ``fault`` in the loop config (failure-recovery tests)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _maybe_inject_fault(
    fault: dict[str, Any] | None, global_step: int, batch: dict[str, Any]
) -> None:
    """Test hook. ``{"step": k, "marker": path}`` raises once at step ``k`` (a marker file
    makes the retried attempt pass); ``{"step": k, "nonfinite": True}`` poisons the
    target of step ``k`` with NaN instead."""
    if not fault or global_step != fault["step"]:
        return
    if fault.get("nonfinite"):
        batch["target"] = torch.full_like(batch["target"], float("nan"))
        return
    marker = Path(fault["marker"])
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"failed at step {global_step}\n")
    raise InjectedFault(f"injected failure at step {global_step}")


def _broadcast(value: Any, world_size: int) -> Any:
    """Rank 0's ``value`` on every rank."""
    if world_size == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


class _DroppedCheckpoint:
    """``Checkpoint`` of :class:`LocalSession`: nothing is kept."""

    @staticmethod
    def from_directory(directory: str) -> None:
        return None


class LocalSession:
    """Stands in for ``ray.train`` where the loop runs alone in this process without Ray
    (the benchmarks): rank 0 of 1, no checkpoint to resume from, reports and checkpoints
    dropped."""

    Checkpoint = _DroppedCheckpoint
    #: whether ``report`` takes over a checkpoint's folder (deletes it once persisted);
    #: otherwise the loop deletes it when ``report`` returns
    takes_checkpoint_folders = False

    def get_context(self) -> LocalSession:
        return self

    def get_world_rank(self) -> int:
        return 0

    def get_world_size(self) -> int:
        return 1

    def get_checkpoint(self) -> None:
        return None

    def report(self, metrics: dict[str, Any], checkpoint: object = None) -> None:
        return None

    @staticmethod
    def device(kind: DeviceKind) -> torch.device:
        return local_device(kind)


class RayTrainSession:
    """``ray.train`` for a Ray Train worker. Checkpoints are persisted in the background
    (``CheckpointUploadMode.ASYNC``; Ray deletes the local folder once it is stored), so
    training goes on while the epoch's checkpoint is copied to ``train.storage_path``."""

    takes_checkpoint_folders = True

    def __init__(self) -> None:
        import ray.train

        self.train = ray.train
        self.Checkpoint = ray.train.Checkpoint

    def get_context(self) -> Any:
        return self.train.get_context()

    def get_checkpoint(self) -> Any:
        return self.train.get_checkpoint()

    @staticmethod
    def device(kind: DeviceKind) -> torch.device:
        return worker_device(kind)

    def report(self, metrics: dict[str, Any], checkpoint: Any = None) -> None:
        if checkpoint is None:
            self.train.report(metrics)
            return
        mode = self.train.CheckpointUploadMode.ASYNC
        self.train.report(metrics, checkpoint=checkpoint, checkpoint_upload_mode=mode)


def _session(loop_config: dict[str, Any]) -> Any:
    """Where the loop reports: :class:`RayTrainSession`, or ``loop_config["session"]`` when
    the loop runs in-process, as in a Ray Tune trial (an object with the same
    ``get_context``, ``get_checkpoint``, ``report``, ``device``, ``Checkpoint`` and
    ``takes_checkpoint_folders``; see ``smartassign.tuning.trainable``)."""
    return loop_config.get("session") or RayTrainSession()


class _StepLine:
    """Rank 0's step-level progress line every ``train.log_every_steps`` steps: step of
    the run, images per second, mean loss since the last line and the time left. Reading
    the loss is the only wait for the device between two lines; the finiteness check of
    deferred steps (``Optimisation.check_finite``) rides on it."""

    def __init__(self, run: WorkerRun, steps_per_epoch: int) -> None:
        self.run = run
        self.every = run.cfg.train.log_every_steps
        self.total_steps = run.cfg.train.epochs * steps_per_epoch
        self.first_unchecked = run.progress.global_step
        self.images = 0
        self.loss: torch.Tensor | None = None
        self.steps = 0
        self.start = time.perf_counter()

    def after_step(self, images: int, loss: torch.Tensor) -> None:
        self.images += images * self.run.world_size
        self.loss = loss.clone() if self.loss is None else self.loss + loss
        self.steps += 1
        step = self.run.progress.global_step
        if not self.every or step % self.every:
            return
        self.run.optimisation.check_finite(self.checked())
        if self.run.rank == 0:
            seconds = time.perf_counter() - self.start
            rate = self.images / max(seconds, 1e-9)
            left = (self.total_steps - step) * seconds / self.steps
            _progress(
                f"  step {step}/{self.total_steps}  {rate:.1f} img/s  "
                f"loss {float(self.loss) / self.steps:.4f}  ETA {_duration(left)}"
            )
        self.images, self.loss, self.steps = 0, None, 0
        self.start = time.perf_counter()

    def checked(self) -> str:
        """The steps since the last finiteness check, as ``first-last``; starts anew."""
        first, self.first_unchecked = self.first_unchecked, self.run.progress.global_step
        return f"{first}-{self.run.progress.global_step - 1}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class WorkerRun:
    """State of one training worker: model, optimiser, schedule, progress.

    ``loop_config["session"]`` replaces ``ray.train`` where the loop runs in-process (Tune
    trials, the benchmarks).
    """

    def __init__(self, cfg: Config, loop_config: dict[str, Any]) -> None:
        self.cfg = cfg
        self.loop_config = loop_config
        self.session = _session(loop_config)
        context = self.session.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.device = self.session.device(cfg.train.device)
        self.amp_dtype = autocast_dtype(cfg.train.device, cfg.train.amp, cfg.train.amp_dtype)
        seed_everything(cfg.train.seed + self.rank)
        if self.device.type == "cpu":
            # a worker's CPU share, not what the process inherited, sets torch's threads
            torch.set_num_threads(max(1, int(cfg.train.resources_per_worker.get("CPU", 1))))

        accelerated = self.device.type != "cpu"
        channels_last = accelerated and cfg.train.channels_last
        self.memory_format = torch.channels_last if channels_last else torch.preserve_format
        model = build_model(cfg).to(self.device, memory_format=self.memory_format)
        if loop_config.get("init") is not None:  # train.init: fine-tune a trained model
            model.load_state_dict(loop_config["init"])
        if loop_config.get("backbone") is not None:  # K1 / K2: a trained V6's encoder + GKFMs
            model.load_backbone(loop_config["backbone"])
        self.train_loader = build_dataloader(
            cfg, "train", rank=self.rank, num_replicas=self.world_size, pin_memory=accelerated
        )
        self.optimisation = Optimisation.from_config(
            cfg, model, self.device, self.amp_dtype, cfg.train.epochs * len(self.train_loader)
        )
        self.val_loader = build_dataloader(cfg, "val") if self.rank == 0 else None
        self.progress = Progress()
        self._resume()
        if self.world_size > 1:
            import ray.train.torch

            self.optimisation.net = ray.train.torch.prepare_model(model, move_to_device=False)
        if cfg.train.compile:
            self.optimisation.net = torch.compile(self.optimisation.net)
        self.mlflow = (
            tracking.client(loop_config["tracking_uri"])
            if self.rank == 0 and loop_config.get("mlflow_run_id")
            else None
        )
        if self.rank == 0:
            self._announce_precision()

    def _announce_precision(self) -> None:
        """Rank 0: say (and tag the MLflow run with) what the steps compute in, which
        ``train.amp_dtype`` ``auto`` decides per machine."""
        precision = precision_name(self.amp_dtype)
        _progress(f"training on {self.device} in {precision}")
        if self.mlflow is not None:
            self.mlflow.set_tag(self.loop_config["mlflow_run_id"], "train_precision", precision)

    def _resume(self) -> None:
        checkpoint = self.session.get_checkpoint()
        if checkpoint is None:
            return
        with checkpoint.as_directory() as directory:
            state = load_state(Path(directory))
        self.optimisation.load_state_dicts(state)
        known = Progress.__dataclass_fields__
        self.progress = Progress(**{k: v for k, v in state["progress"].items() if k in known})
        self.progress.resumes += 1
        restore_rng_state(state["rng"])
        if self.rank == 0:
            _progress(
                f"resumed from checkpoint: epoch {self.progress.epoch}, "
                f"step {self.progress.global_step}"
            )

    def report(self, metrics: dict[str, Any]) -> None:
        """Every rank reports; rank 0 attaches a checkpoint of the current state."""
        metrics = {
            **metrics,
            "epoch": self.progress.epoch,
            "global_step": self.progress.global_step,
        }
        if self.rank != 0:
            self.session.report(metrics)
            return
        directory = Path(tempfile.mkdtemp(prefix="smartassign-checkpoint-"))
        try:
            save_checkpoint(
                directory,
                cfg=self.cfg,
                progress=self.progress,
                parts=self.optimisation.state_dicts(),
            )
            checkpoint = self.session.Checkpoint.from_directory(str(directory))
            self.session.report(metrics, checkpoint=checkpoint)
        finally:
            if not self.session.takes_checkpoint_folders:
                shutil.rmtree(directory, ignore_errors=True)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch: its training steps, timed as ``train/epoch_seconds`` (rank 0), then
        ``end_epoch`` (validation, schedule, progress, outside the timing)."""
        start = time.perf_counter()
        train_metrics = self.run_epoch(epoch)
        return self.end_epoch(train_metrics, time.perf_counter() - start)

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """The epoch's training steps; loss terms stay on the device and are read once per
        ``train.log_every_steps`` (the step line) and at the end of the epoch."""
        cfg = self.cfg
        self.train_loader.sampler.set_epoch(epoch)
        sums: dict[str, torch.Tensor] = {}
        done = 0
        line = _StepLine(self, len(self.train_loader))
        batches = itertools.islice(iter(self.train_loader), self.progress.step_in_epoch, None)
        for batch in batches:
            _maybe_inject_fault(self.loop_config.get("fault"), self.progress.global_step, batch)
            where = {
                key: batch[key].to(self.device, non_blocking=True)
                for key in ("context", "box")
                if key in batch
            }
            images = {
                key: batch[key].to(self.device, non_blocking=True, memory_format=self.memory_format)
                for key in ("input", "target")
            }
            values = self.optimisation.step(
                images["input"],
                images["target"],
                batch["task"].to(self.device, non_blocking=True).view(-1),
                self.progress.global_step,
                **where,
            )
            for name, value in values.items():
                sums[name] = sums[name] + value if name in sums else value.clone()
            done += 1
            self.progress.step_in_epoch += 1
            self.progress.global_step += 1
            line.after_step(batch["input"].shape[0], values["total"])
            every = cfg.train.checkpoint_every_steps
            if every and self.progress.global_step % every == 0:
                self.optimisation.check_finite(line.checked())
                self.report({"kind": "step"})
        self.optimisation.check_finite(line.checked())
        return {f"train/loss/{name}": float(value) / max(done, 1) for name, value in sums.items()}

    def validates(self, epoch: int) -> bool:
        """Whether the 0-based ``epoch`` ends with a validation: every ``train.val_every``
        epochs and always the last one."""
        done = epoch + 1
        return done % self.cfg.train.val_every == 0 or done == self.cfg.train.epochs

    def end_epoch(self, train_metrics: dict[str, float], seconds: float) -> dict[str, float]:
        validating = self.validates(self.progress.epoch)
        metrics: dict[str, float] = {}
        if self.rank == 0:
            if validating:
                metrics = validate(
                    self.optimisation.eval_model, self.val_loader, self.device, self.amp_dtype
                )
            metrics.update(train_metrics)
            metrics["train/lr"] = self.optimisation.optimizer.param_groups[0]["lr"]
            metrics["train/epoch_seconds"] = seconds
        metrics = _broadcast(metrics, self.world_size)
        monitor = self.cfg.train.monitor
        if monitor == TRAINING_LOSS:  # every epoch; lower is better
            self.optimisation.scheduler.after_validation(-metrics[monitor])
        elif validating:
            self.optimisation.scheduler.after_validation(metrics[monitor])
        self.progress.epoch += 1
        self.progress.step_in_epoch = 0
        self.progress.history.append(metrics)
        return metrics

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Rank 0: log one epoch's metrics to MLflow unless that epoch is already there."""
        if self.mlflow is None:
            return
        run_id = self.loop_config["mlflow_run_id"]
        if epoch in tracking.logged_steps(self.mlflow, run_id, "train/lr"):
            return
        tracking.log_metrics(self.mlflow, run_id, metrics, step=epoch)

    @torch.no_grad()
    def log_figures(self, epoch: int, per_task: int = 2) -> None:
        """Rank 0: a grid of validation restorations and the GKFM gate plot of this epoch."""
        if self.mlflow is None or self.val_loader is None:
            return
        import matplotlib.pyplot as plt

        model = self.optimisation.eval_model.eval()
        rows, gate_sums, taken = [], {}, {0: 0, 1: 0}
        for batch in self.val_loader:
            task = batch["task"].view(-1)
            if taken[int(task[0])] >= per_task:
                if min(taken.values()) >= per_task:
                    break
                continue
            taken[int(task[0])] += 1
            output = model(batch["input"].to(self.device))
            restored = output.for_tasks(task.to(self.device)).float().clamp(0, 1)
            rows.append(tuple(to_pixels(t[0]) for t in (batch["input"], restored, batch["target"])))
            if output.knowledge is not None:
                for kind, gates in output.knowledge.gates.items():
                    gate_sums[kind] = gate_sums.get(kind, 0) + gates[0].float().cpu().numpy()
        model.train()
        run_id = self.loop_config["mlflow_run_id"]
        if rows:
            grid = tracking.sample_grid(rows)
            self.mlflow.log_image(run_id, grid, artifact_file=f"samples/epoch_{epoch:03d}.png")
        if gate_sums:
            count = sum(taken.values())
            figure = tracking.gate_figure(
                {kind: total / count for kind, total in gate_sums.items()},
                f"GKFM gates per knowledge atom, epoch {epoch} (mean over validation images)",
            )
            self.mlflow.log_figure(run_id, figure, f"gates/epoch_{epoch:03d}.png")
            plt.close(figure)

    def catch_up_logging(self) -> None:
        """After a restart, log the last checkpointed epoch if the crash beat its logging."""
        if self.progress.history:
            self.log_epoch(self.progress.epoch, self.progress.history[-1])


def _monitored(monitor: str, metrics: dict[str, float]) -> str:
    """The monitored value as the epoch line shows it: PSNR in dB, others to 4 decimals."""
    value = metrics[monitor]
    return f"{value:.2f} dB" if "psnr" in monitor else f"{value:.4f}"


def train_loop_per_worker(loop_config: dict[str, Any]) -> dict[str, Any]:
    """Entry point of every Ray Train worker; ``loop_config["config"]`` is the config dict.

    Returns a status dict (``result.return_value``): ``{"status": "finished", "epoch": N}``
    (epochs done) or, when a loss turns non-finite, ``{"status": "nonfinite", "message":
    ...}`` so the driver stops the run instead of retrying it from the same checkpoint.
    """
    _quiet_report_lines()
    cfg = config_from_dict(loop_config["config"])
    run = WorkerRun(cfg, loop_config)
    run.catch_up_logging()
    for epoch in range(run.progress.epoch, cfg.train.epochs):
        try:
            metrics = run.train_epoch(epoch)
        except NonFiniteLossError as error:
            return {"status": "nonfinite", "message": str(error)}
        run.report(metrics)
        run.log_epoch(run.progress.epoch, metrics)
        validated = run.validates(epoch)
        if validated:
            run.log_figures(run.progress.epoch)
        if run.rank == 0:
            monitored = (
                f"{cfg.train.monitor} {_monitored(cfg.train.monitor, metrics)}  "
                if validated
                else ""
            )
            _progress(
                f"epoch {run.progress.epoch}/{cfg.train.epochs}: "
                f"loss {metrics.get('train/loss/total', float('nan')):.4f}  {monitored}"
                f"({metrics['train/epoch_seconds']:.1f} s)"
            )
    return {"status": "finished", "epoch": run.progress.epoch}
