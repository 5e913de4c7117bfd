"""The worker loop in-process (no Ray): validation every ``train.val_every`` epochs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from smartassign.config import config_from_dict
from smartassign.engine.loop import LocalSession, WorkerRun, train_loop_per_worker
from smartassign.engine.schedule import LearningRateSchedule

from .engine_fixtures import tiny_tree

MONITOR = "val/psnr_y_mean"


class RecordingSession(LocalSession):
    """Keeps every report of the loop."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []

    def report(self, metrics: dict[str, Any], checkpoint: object = None) -> None:
        self.reports.append(metrics)


def test_validation_every_n_epochs_and_after_the_last(tiny_data, monkeypatch):
    validations: list[float] = []
    original = LearningRateSchedule.after_validation

    def record(schedule: LearningRateSchedule, monitored: float) -> None:
        validations.append(monitored)
        original(schedule, monitored)

    monkeypatch.setattr(LearningRateSchedule, "after_validation", record)
    tree = tiny_tree(tiny_data)
    tree["train"].update(epochs=5, val_every=2, lr_schedule="plateau")
    session = RecordingSession()
    status = train_loop_per_worker({"config": config_from_dict(tree).to_dict(), "session": session})

    assert status == {"status": "finished", "epoch": 5}
    assert [report["epoch"] for report in session.reports] == [1, 2, 3, 4, 5]
    validated = [report for report in session.reports if MONITOR in report]
    assert [report["epoch"] for report in validated] == [2, 4, 5]
    assert validations == [report[MONITOR] for report in validated]
    assert all("train/loss/total" in report for report in session.reports)


@pytest.mark.parametrize("val_every", [0, -1])
def test_val_every_below_one_is_refused(val_every):
    from smartassign.config import ConfigError

    with pytest.raises(ConfigError, match=r"train\.val_every"):
        config_from_dict({"train": {"val_every": val_every}})


def test_validating_less_often_trains_the_same_weights(tiny_data):
    """Validation draws no randomness of the training: the weights after two epochs are
    the same whether both epochs or only the last were validated."""
    weights = []
    for val_every in (1, 2):
        tree = tiny_tree(tiny_data)
        tree["train"].update(epochs=2, val_every=val_every)
        run = WorkerRun(config_from_dict(tree), {"session": LocalSession()})
        reports = [run.train_epoch(epoch) for epoch in range(2)]
        assert (MONITOR in reports[0]) == (val_every == 1)
        weights.append(run.optimisation.model.state_dict())
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=0, msg=name)


class FolderSession(RecordingSession):
    """Checks each epoch's checkpoint folder while ``report`` runs and keeps its path."""

    class Checkpoint:
        @staticmethod
        def from_directory(directory: str) -> Path:
            return Path(directory)

    def __init__(self) -> None:
        super().__init__()
        self.folders: list[Path] = []

    def report(self, metrics: dict[str, Any], checkpoint: object = None) -> None:
        super().report(metrics, checkpoint)
        assert isinstance(checkpoint, Path) and (checkpoint / "state.pt").is_file()
        self.folders.append(checkpoint)


def test_checkpoint_folders_are_removed_unless_the_session_takes_them(tiny_data):
    tree = tiny_tree(tiny_data)
    tree["train"].update(epochs=2)
    session = FolderSession()
    train_loop_per_worker({"config": config_from_dict(tree).to_dict(), "session": session})
    assert len(session.folders) == 2
    assert not any(folder.exists() for folder in session.folders)


def test_the_papers_schedule_halves_the_rate_when_the_training_loss_stops_falling(tiny_data):
    """``train.monitor: train/loss/total``: judged every epoch, validated or not, lower
    being better; with patience 0 one epoch without a lower loss halves the rate."""
    tree = tiny_tree(tiny_data)
    tree["train"].update(
        epochs=3,
        val_every=3,
        lr_schedule="plateau",
        monitor="train/loss/total",
        lr_patience=0,
        warmup_steps=0,
    )
    run = WorkerRun(config_from_dict(tree), {"session": LocalSession()})
    schedule = run.optimisation.scheduler
    losses = iter([0.5, 0.6, 0.4])  # falls, rises (no improvement), falls
    scales = []
    for epoch in range(3):
        run.end_epoch({"train/loss/total": next(losses)}, seconds=1.0)
        scales.append(schedule.scale)
        assert run.validates(epoch) == (epoch == 2)
    assert scales == [1.0, 0.5, 0.5]
    assert schedule.best == -0.4


@pytest.mark.parametrize("every", [0, 2])
def test_step_line_every_n_steps_with_rate_loss_and_eta(tiny_data, capfd, every):
    tree = tiny_tree(tiny_data)
    tree["train"].update(epochs=2, log_every_steps=every)
    run = WorkerRun(config_from_dict(tree), {"session": LocalSession()})
    capfd.readouterr()
    for epoch in range(2):
        run.train_epoch(epoch)
    total = 2 * len(run.train_loader)
    found = re.findall(
        r"^  step (\d+)/(\d+)  [\d.]+ img/s  loss ([\d.]+)  ETA \d+:\d\d:\d\d$",
        capfd.readouterr().out,
        flags=re.MULTILINE,
    )
    expected = list(range(every, total + 1, every)) if every else []
    assert [int(step) for step, _, _ in found] == expected
    assert all(int(of) == total and float(loss) > 0 for _, of, loss in found)
