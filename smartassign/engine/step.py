"""One optimisation step of the total loss (Eq. 19), as every training run takes it.

The Ray Train worker loop, Tune trials, ablation runs and the benchmarks all step through
``Optimisation.step``: forward with each decoder on its own task's samples (optionally under
bf16/fp16 autocast), Eq. 19, backward (through a GradScaler for float16), gradient
clipping, a finiteness check, Adam, the learning-rate schedule and the EMA of the weights.

On a CPU the finiteness check reads the loss terms every step (reading costs nothing
there). On CUDA without a GradScaler it never waits for the device: a step whose loss or
gradient norm is not finite is skipped on the device (fused Adam's ``found_inf``, as a
GradScaler does it), counted, and :meth:`Optimisation.check_finite` raises at the next
read, once per logging interval and before every checkpoint.
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
    deferred_checks: bool = False
    skipped: torch.Tensor | None = None

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        model: SmartAssign,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        total_steps: int,
        deferred_checks: bool | None = None,
    ) -> Optimisation:
        """Adam over the trainable parameters (frozen K1 / K2 backbones stay out), the
        ``train.lr_schedule`` over ``total_steps`` steps, and an EMA when
        ``train.ema_decay`` > 0. ``deferred_checks`` (default: on CUDA without float16)
        uses fused Adam and checks finiteness on the device (:meth:`check_finite`)."""
        if deferred_checks is None:
            deferred_checks = cls.defers_checks(device, amp_dtype)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=cfg.train.lr, fused=deferred_checks or None)
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
            deferred_checks=deferred_checks,
            skipped=torch.zeros((), device=device) if deferred_checks else None,
        )

    @staticmethod
    def defers_checks(device: torch.device, amp_dtype: torch.dtype | None) -> bool:
        """Whether steps on ``device`` check finiteness on the device (CUDA, fused Adam)
        rather than on the host; float16's GradScaler reads its scale every step anyway."""
        return device.type == "cuda" and amp_dtype is not torch.float16

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
    ) -> dict[str, torch.Tensor]:
        """One optimiser step on a batch (``task``: 0 rain, 1 snow per sample; ``context``
        and ``box``: where the crops come from, for veil removal); returns the loss terms
        as detached 0-d tensors on the device (``total`` and each term).

        Without deferred checks it raises ``NonFiniteLossError`` naming step ``index``
        before the weights change when a loss term is not finite, or the gradient norm
        without a GradScaler. Under float16 a non-finite gradient with finite loss terms is
        taken for an overflow of the scaled loss: the scaler skips that step and halves its
        scale, as it is meant to, until the scale falls below ``MIN_LOSS_SCALE``, where it
        raises as well. With deferred checks such a step is skipped on the device and
        :meth:`check_finite` raises."""
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp_dtype):
            output = self.net(degraded, task, context=context, box=box)
        terms = self.criterion(output, degraded, target, task)
        self.scaler.scale(terms.total).backward()
        self.scaler.unscale_(self.optimizer)
        clip = self.grad_clip or math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        values = {"total": terms.total.detach()}
        values.update({name: value.detach() for name, value in terms.terms.items()})
        if self.deferred_checks:
            self._step_unless_nonfinite(values, grad_norm)
        else:
            self._check_now(values, grad_norm, index)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.after_step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return values

    def _check_now(
        self, values: dict[str, torch.Tensor], grad_norm: torch.Tensor, index: int
    ) -> None:
        floats = {name: float(value) for name, value in values.items()}
        bad = [n for n, v in floats.items() if n != "total" and not math.isfinite(v)]
        bad_gradient = not math.isfinite(float(grad_norm)) and (
            not self.scaler.is_enabled() or self.scaler.get_scale() < MIN_LOSS_SCALE
        )
        if bad or not math.isfinite(floats["total"]) or bad_gradient:
            where = f"loss term {', '.join(bad)}" if bad else "gradient norm"
            raise NonFiniteLossError(
                f"step {index}: {where} is not finite ({floats}); the last good checkpoint is kept"
            )

    def _step_unless_nonfinite(
        self, values: dict[str, torch.Tensor], grad_norm: torch.Tensor
    ) -> None:
        """Fused Adam skips the update on the device when ``found_inf`` is 1."""
        finite = torch.isfinite(torch.stack([*values.values(), grad_norm.to(values["total"])]))
        found_inf = (~finite.all()).float()
        self.skipped += found_inf
        self.optimizer.grad_scale = None  # type: ignore[attr-defined]
        self.optimizer.found_inf = found_inf  # type: ignore[attr-defined]
        try:
            self.optimizer.step()
        finally:
            del self.optimizer.grad_scale, self.optimizer.found_inf  # type: ignore[attr-defined]

    def check_finite(self, steps: str) -> None:
        """Raise ``NonFiniteLossError`` if a step since the last call was skipped for a
        non-finite loss or gradient (deferred checks only; reads one number from the
        device). ``steps`` names the steps checked, for the message."""
        if self.skipped is None:
            return
        count = int(self.skipped)
        if count:
            self.skipped.zero_()
            raise NonFiniteLossError(
                f"steps {steps}: {count} step(s) had a non-finite loss term or gradient norm "
                "and were skipped; the last good checkpoint is kept"
            )
