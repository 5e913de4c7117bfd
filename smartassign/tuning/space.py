"""The sweep's search space: ``tune.search_space`` in params.yaml, checked and made Ray Tune's.

Each entry maps a dotted configuration key to one distribution::

    loss.lambda1: {loguniform: [0.001, 0.1]}   # low > 0
    train.lr: {uniform: [0.0001, 0.001]}
    model.gkfm_hidden: {choice: [16, 24, 32]}  # one drawn per trial
    model.residual: {grid: [true, false]}      # every value, tune.num_samples times each

Checks happen twice, both before any trial starts: :func:`parse_space` at config-load time
(shape, known key, bounds, each value against the field's own constraints) and
:func:`check_space` against the whole base configuration (cross-field rules such as
``embed_dim`` divisible by ``num_heads``). Every message names the offending key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smartassign.config import TRIAL_KEYS, check_settable, check_value

if TYPE_CHECKING:
    from smartassign.config import Config

RANGES = ("uniform", "loguniform")
LISTS = ("choice", "grid")

#: keys a trial sets itself, and why they cannot be swept
RESERVED = {
    **TRIAL_KEYS,
    "train.epochs": "every trial runs tune.epochs epochs",
    "train.tuned_params": "a sweep starts from params.yaml",
}
UNSWEPT_SECTIONS = ("tune", "ablation", "registry")


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
        check_settable(key, RESERVED, UNSWEPT_SECTIONS, "swept")
        domain = _domain(key, spec)
        for value in domain.values:
            check_value(key, value)
        space[key] = domain
    return space


def check_space(cfg: Config) -> dict[str, Domain]:
    """:func:`parse_space` plus every value / bound tried in the whole base configuration.

    Raises :class:`~smartassign.config.ConfigError` naming ``tune.search_space.<key>``.
    """
    from smartassign.config import ConfigError

    space = parse_space(cfg.tune.search_space)
    for key, domain in space.items():
        for value in domain.values:
            try:
                cfg.override({key: value})
            except ConfigError as error:
                detail = str(error).split("\n", 1)[-1].strip()
                raise ConfigError(
                    f"tune.search_space.{key}: value {value!r} is invalid with this "
                    f"configuration: {detail}"
                ) from None
    return space


def param_space(space: Mapping[str, Domain]) -> dict[str, Any]:
    """The ``param_space`` of the Tuner: dotted key -> Ray Tune domain."""
    return {key: domain.to_tune() for key, domain in space.items()}
