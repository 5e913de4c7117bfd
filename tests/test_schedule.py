"""Learning-rate schedules of the training loop (smartassign/engine/schedule.py)."""

import itertools
import math

import pytest
import torch

from smartassign.config import Config
from smartassign.engine.schedule import LearningRateSchedule


def _schedule(**train: object) -> tuple[torch.optim.Optimizer, LearningRateSchedule]:
    cfg = Config().override({f"train.{key}": value for key, value in train.items()})
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.train.lr)
    return optimizer, LearningRateSchedule(optimizer, cfg.train, total_steps=100)


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


def test_cosine_warms_up_then_decays_to_zero():
    optimizer, schedule = _schedule(lr=1e-3, lr_schedule="cosine", warmup_steps=10)
    rates = [_lr(optimizer)]
    for _ in range(100):
        schedule.after_step()
        rates.append(_lr(optimizer))
    assert rates[0] == pytest.approx(1e-4)
    assert rates[9] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.09)))
    assert max(rates) <= 1e-3 and rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(later <= earlier for earlier, later in itertools.pairwise(rates[10:]))


def test_plateau_multiplies_after_patience_and_resumes_from_state():
    optimizer, schedule = _schedule(
        lr=1e-3, lr_schedule="plateau", warmup_steps=0, lr_factor=0.5, lr_patience=1
    )
    schedule.after_validation(30.0)
    schedule.after_validation(29.0)
    assert _lr(optimizer) == pytest.approx(1e-3)
    schedule.after_validation(29.5)
    assert _lr(optimizer) == pytest.approx(5e-4)
    again, restored = _schedule(
        lr=1e-3, lr_schedule="plateau", warmup_steps=0, lr_factor=0.5, lr_patience=1
    )
    restored.load_state_dict(schedule.state_dict())
    assert _lr(again) == pytest.approx(5e-4)
    restored.after_validation(31.0)
    assert restored.best == 31.0 and _lr(again) == pytest.approx(5e-4)
