"""One optimisation step (engine.step.Optimisation): finiteness checks and float16 overflow."""

from __future__ import annotations

import pytest
import torch

from smartassign.builder import build_model
from smartassign.config import config_from_dict
from smartassign.engine.step import NonFiniteLossError, Optimisation

from .engine_fixtures import TINY_MODEL


def _optimisation(scaler: torch.amp.GradScaler | None = None) -> Optimisation:
    torch.manual_seed(0)
    cfg = config_from_dict({"model": TINY_MODEL, "train": {"ema_decay": 0.0}})
    model = build_model(cfg)
    optimisation = Optimisation.from_config(cfg, model, torch.device("cpu"), None, total_steps=10)
    if scaler is not None:
        optimisation.scaler = scaler
    return optimisation


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(2, 3, 32, 32, generator=generator)
    degraded = (target + 0.2 * torch.rand(2, 3, 32, 32, generator=generator)).clamp(0, 1)
    return degraded, target, torch.tensor([0, 1])


def _weights(optimisation: Optimisation) -> list[torch.Tensor]:
    return [p.detach().clone() for p in optimisation.model.parameters()]


def test_a_step_changes_the_weights_and_returns_finite_terms():
    optimisation = _optimisation()
    before = _weights(optimisation)
    values = optimisation.step(*_batch(), index=0)
    assert all(torch.isfinite(torch.tensor(v)) for v in values.values()), values
    after = _weights(optimisation)
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))


def test_a_nonfinite_loss_stops_before_the_weights_change():
    optimisation = _optimisation()
    before = _weights(optimisation)
    degraded, target, task = _batch()
    target[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"step 7: loss term .*charbonnier"):
        optimisation.step(degraded, target, task, index=7)
    for b, a in zip(before, _weights(optimisation), strict=True):
        assert torch.equal(b, a)


def test_a_float16_overflow_is_skipped_and_the_scale_lowered():
    """A scale so large that the scaled gradients overflow: the GradScaler skips the step
    (weights unchanged) and halves its scale, instead of the run stopping."""
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)
    optimisation = _optimisation(scaler)
    before = _weights(optimisation)
    values = optimisation.step(*_batch(), index=0)
    assert torch.isfinite(torch.tensor(values["total"]))
    for b, a in zip(before, _weights(optimisation), strict=True):
        assert torch.equal(b, a)
    assert scaler.get_scale() == 2.0**126


@pytest.mark.parametrize(("scale", "stops"), [(2.0**16, False), (0.5, True)])
def test_a_nan_gradient_under_float16_stops_once_the_scale_is_spent(scale: float, stops: bool):
    """A NaN gradient with finite loss terms looks like an overflow at first (skipped);
    with the scale already below 1 it cannot be one, and the run stops."""
    scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    optimisation = _optimisation(scaler)
    weight = next(optimisation.model.parameters())
    weight.register_hook(lambda grad: grad * float("nan"))
    if stops:
        with pytest.raises(NonFiniteLossError, match="step 3: gradient norm is not finite"):
            optimisation.step(*_batch(), index=3)
    else:
        before = _weights(optimisation)
        optimisation.step(*_batch(), index=3)
        for b, a in zip(before, _weights(optimisation), strict=True):
            assert torch.equal(b, a)
