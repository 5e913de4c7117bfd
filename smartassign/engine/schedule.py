"""Learning-rate schedules: a cosine decay over the run, or the paper's plateau halving.

``train.lr_schedule``:

- ``cosine`` (default): a linear warm-up over ``train.warmup_steps`` optimiser steps, then
  ``lr * (1 + cos(pi * t)) / 2`` with ``t`` the fraction of the run's steps done, updated
  every step. A run of fixed length (the 15-minute default, sweep trials, ablation runs)
  ends at a small learning rate, so its last weights are settled weights.
- ``plateau`` (paper Sec. 4.1): after the warm-up the rate is multiplied by
  ``train.lr_factor`` whenever ``train.monitor`` has not improved for more than
  ``train.lr_patience`` validations (one every ``train.val_every`` epochs), or epochs when
  it monitors the training loss (``train/loss/total``, as the paper does); suited to long
  runs with no fixed end.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from smartassign.config import TrainConfig


class LearningRateSchedule:
    """Sets the optimiser's learning rate; ``state_dict`` goes into every checkpoint."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
    ) -> None:
        self.optimizer = optimizer
        self.base_lr = cfg.lr
        self.kind = cfg.lr_schedule
        self.warmup_steps = cfg.warmup_steps
        self.total_steps = max(1, total_steps)
        self.lr_factor = cfg.lr_factor
        self.patience = cfg.lr_patience
        self.step = 0
        self.scale = 1.0  # plateau: product of the decays so far
        self.best: float | None = None
        self.bad_epochs = 0
        self._apply()

    def factor(self) -> float:
        """The multiplier of ``train.lr`` for the next optimiser step."""
        warm = min(1.0, (self.step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.kind == "plateau":
            return warm * self.scale
        done = min(self.step, self.total_steps) / self.total_steps
        return warm * 0.5 * (1.0 + math.cos(math.pi * done))

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * self.factor()

    def after_step(self) -> None:
        """Call after every optimiser step."""
        self.step += 1
        self._apply()

    def after_validation(self, monitored: float) -> None:
        """Call with the monitored value, higher is better: after every validation, or
        after every epoch with the negated training loss (``train/loss/total``)."""
        if self.kind != "plateau":
            return
        if self.best is None or monitored > self.best:
            self.best, self.bad_epochs = monitored, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.scale *= self.lr_factor
                self.bad_epochs = 0
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "scale": self.scale,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.scale = float(state["scale"])
        self.best = state["best"]
        self.bad_epochs = int(state["bad_epochs"])
        self._apply()
