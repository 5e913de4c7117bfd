"""Parameter and FLOP accounting of a SmartAssign network (``smartassign model summary``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ModuleCost:
    """Parameters and multiply-accumulates of one module at the measured input size."""

    name: str
    parameters: int
    macs: int


@dataclass(frozen=True)
class ModelSummary:
    """Totals and a per-module breakdown; MACs count conv, linear, matmul and attention."""

    height: int
    width: int
    parameters: int
    trainable_parameters: int
    macs: int
    modules: list[ModuleCost]

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def to_dict(self) -> dict[str, object]:
        return {
            "input": [self.height, self.width],
            "parameters": self.parameters,
            "trainable_parameters": self.trainable_parameters,
            "gmacs": round(self.gmacs, 4),
            "gflops": round(2 * self.gmacs, 4),
            "modules": {
                m.name: {"parameters": m.parameters, "gmacs": round(m.macs / 1e9, 4)}
                for m in self.modules
            },
        }

    def table(self) -> str:
        width = max(len(m.name) for m in self.modules) if self.modules else 10
        lines = [
            f"{'module':<{width}}  {'params':>10}  {'GMACs':>8}",
            f"{'-' * width}  {'-' * 10}  {'-' * 8}",
        ]
        lines += [
            f"{m.name:<{width}}  {m.parameters:>10,}  {m.macs / 1e9:>8.3f}" for m in self.modules
        ]
        lines.append(f"{'total':<{width}}  {self.parameters:>10,}  {self.gmacs:>8.3f}")
        lines.append(
            f"input 3x{self.height}x{self.width}; FLOPs = 2 x MACs = {2 * self.gmacs:.2f} G; "
            f"trainable parameters {self.trainable_parameters:,}"
        )
        return "\n".join(lines)


def _macs(module: nn.Module, key: str, flops: dict[str, dict[object, int]]) -> int:
    """MACs of ``module``; containers (ModuleList/ModuleDict) are never called, so sum
    their children."""
    if key in flops:
        return int(sum(flops[key].values()) // 2)
    return sum(_macs(child, f"{key}.{name}", flops) for name, child in module.named_children())


def summarize(
    model: nn.Module, height: int = 256, width: int = 256, depth: int = 2
) -> ModelSummary:
    """Count parameters and MACs of ``model`` for one ``3 x height x width`` image.

    ``depth`` limits the breakdown to module names with fewer than ``depth`` dots
    (``encoder``, ``encoder.blocks``...).
    """
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    device = next(model.parameters()).device
    with torch.no_grad(), counter:
        model(torch.rand(1, 3, height, width, device=device))
    model.train(was_training)
    flops = counter.get_flop_counts()
    modules = [
        ModuleCost(
            name=name,
            parameters=sum(p.numel() for p in module.parameters()),
            macs=_macs(module, f"{type(model).__name__}.{name}", flops),
        )
        for name, module in model.named_modules()
        if name and name.count(".") < depth and any(True for _ in module.parameters())
    ]
    total_macs = int(sum(flops.get("Global", {}).values()) // 2)
    return ModelSummary(
        height=height,
        width=width,
        parameters=sum(p.numel() for p in model.parameters()),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        macs=total_macs,
        modules=modules,
    )
