"""One optimisation step of the total loss (Eq. 19), as every training run takes it.

The Ray Train worker loop, Tune trials, ablation runs and the benchmarks all step through
``Optimisation.step``: forward with each decoder on its own task's samples (optionally under
bf16/fp16 autocast), Eq. 19, backward (through a GradScaler for float16), gradient
clipping, a finiteness check, Adam, the learning-rate schedule and the EMA of the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from smartassign.config import Config
from smartassign.engine.devices import autocast
from smartassign.engine.schedule import LearningRateSchedule
from smartassign.losses import SmartAssignLoss
from smartassign.model import SmartAssign


class NonFiniteLossError(RuntimeError):
    """A loss term or the gradient norm became NaN or infinite."""


MIN_LOSS_SCALE = 1.0
"""Below this float16 loss scale a non-finite gradient is no overflow: the GradScaler has
halved its scale (65536 at the start) on every step since, so the gradient itself is bad."""


@dataclass
class Optimisation:
    """The model and everything that updates it; each part's ``state_dict`` is checkpointed.

    ``net`` is what the forward pass calls: ``model`` itself, or its DDP wrapper when
    several workers train together.
    """

    model: SmartAssign
    net: nn.Module
    criterion: SmartAssignLoss
    optimizer: torch.optim.Optimizer
    scheduler: LearningRateSchedule
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None
    device: torch.device
    amp_dtype: torch.dtype | None
    grad_clip: float

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        model: SmartAssign,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        total_steps: int,
    ) -> Optimisation:
        """Adam over the trainable parameters (frozen K1 / K2 backbones stay out), the
        ``train.lr_schedule`` over ``total_steps`` steps, and an EMA when
        ``train.ema_decay`` > 0."""
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=cfg.train.lr)
        ema = (
            AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay))
            if cfg.train.ema_decay > 0
            else None
        )
        return cls(
            model=model,
            net=model,
            criterion=SmartAssignLoss(cfg.loss).to(device),
            optimizer=optimizer,
            scheduler=LearningRateSchedule(optimizer, cfg.train, total_steps),
            scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16),
            ema=ema,
            device=device,
            amp_dtype=amp_dtype,
            grad_clip=cfg.train.grad_clip,
        )

    def state_dicts(self) -> dict[str, Any]:
        """What a checkpoint keeps of it: model, EMA (``None`` without one), optimizer,
        schedule and grad-scaler states."""
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dicts(self, state: dict[str, Any]) -> None:
        """Resume from the parts of ``state_dicts`` (a checkpoint's state)."""
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])

    @property
    def eval_model(self) -> SmartAssign:
        """The weights validated and exported: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def step(
        self,
        degraded: torch.Tensor,
        target: torch.Tensor,
        task: torch.Tensor,
        index: int,
        context: torch.Tensor | None = None,
        box: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """One optimiser step on a batch (``task``: 0 rain, 1 snow per sample; ``context``
        and ``box``: where the crops come from, for veil removal); returns the loss terms.
        Raises ``NonFiniteLossError`` naming step ``index`` before the weights change when
        a loss term is not finite, or the gradient norm without a GradScaler. Under float16
        a non-finite gradient with finite loss terms is taken for an overflow of the scaled
        loss: the scaler skips that step and halves its scale, as it is meant to, until the
        scale falls below ``MIN_LOSS_SCALE``, where it raises as well."""
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp_dtype):
            output = self.net(degraded, task, context=context, box=box)
        terms = self.criterion(output, degraded, target, task)
        self.scaler.scale(terms.total).backward()
        self.scaler.unscale_(self.optimizer)
        clip = self.grad_clip or math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        values = terms.as_floats()
        bad = [n for n, v in values.items() if n != "total" and not math.isfinite(v)]
        bad_gradient = not math.isfinite(float(grad_norm)) and (
            not self.scaler.is_enabled() or self.scaler.get_scale() < MIN_LOSS_SCALE
        )
        if bad or not math.isfinite(values["total"]) or bad_gradient:
            where = f"loss term {', '.join(bad)}" if bad else "gradient norm"
            raise NonFiniteLossError(
                f"step {index}: {where} is not finite ({values}); the last good checkpoint is kept"
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.after_step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return values
