"""The sweep's search space, ``tune.search_space``: each entry maps a dotted key to one
distribution::

    loss.lambda1: {loguniform: [0.001, 0.1]}   # low > 0
    train.lr: {uniform: [0.0001, 0.001]}
    model.gkfm_hidden: {choice: [16, 24, 32]}  # one drawn per trial
    model.residual: {grid: [true, false]}      # every value, tune.num_samples times each

:func:`parse_space` checks it at config-load time (shape, known key, bounds, each value
against the field's own constraints); ``smartassign.tuning.space.check_space`` checks it
against the whole base configuration before a sweep starts. Every message names the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smartassign.config.overrides import SWEEP_RESERVED, check_settable, check_value

RANGES = ("uniform", "loguniform")
LISTS = ("choice", "grid")


@dataclass(frozen=True)
class Domain:
    """One entry of the search space: ``kind`` and its bounds or values."""

    kind: str
    values: tuple[Any, ...]  # [low, high] for uniform / loguniform, else every value

    def to_tune(self) -> Any:
        """The Ray Tune domain (``tune.loguniform(...)``, ``tune.grid_search([...])``, ...)."""
        from ray import tune

        factory = {
            "uniform": tune.uniform,
            "loguniform": tune.loguniform,
            "choice": lambda *values: tune.choice(list(values)),
            "grid": lambda *values: tune.grid_search(list(values)),
        }[self.kind]
        return factory(*self.values)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _domain(key: str, spec: Any) -> Domain:
    kinds = ", ".join(RANGES + LISTS)
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ValueError(f"{key}: expected one of {{{kinds}}}: [...], got {spec!r}")
    ((kind, values),) = spec.items()
    if kind not in RANGES + LISTS:
        raise ValueError(f"{key}: unknown distribution {kind!r} (one of {kinds})")
    if not isinstance(values, list | tuple):
        raise ValueError(f"{key}: {kind} takes a list, got {values!r}")
    if kind in LISTS and not values:
        raise ValueError(f"{key}: empty {kind}; give at least one value")
    if kind in RANGES:
        if len(values) != 2 or not all(_number(v) for v in values):
            raise ValueError(f"{key}: {kind} takes [low, high] numbers, got {values!r}")
        low, high = values
        if low >= high:
            raise ValueError(f"{key}: {kind} low {low} must be below high {high}")
        if kind == "loguniform" and low <= 0:
            raise ValueError(f"{key}: loguniform bounds must be > 0, got [{low}, {high}]")
    return Domain(kind, tuple(values))


def parse_space(raw: Mapping[str, Any]) -> dict[str, Domain]:
    """Check ``tune.search_space`` on its own: shape, known keys, each value against its field.

    Raises ``ValueError`` whose message starts with the offending key.
    """
    space: dict[str, Domain] = {}
    for key, spec in raw.items():
        check_settable(key, SWEEP_RESERVED, "swept")
        domain = _domain(key, spec)
        for value in domain.values:
            check_value(key, value)
        space[key] = domain
    return space
