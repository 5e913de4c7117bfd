"""The sweep's search space made Ray Tune's, after checking it against the whole base
configuration (cross-field rules such as ``embed_dim`` divisible by ``num_heads``); its
shape and per-key checks are :mod:`smartassign.config.search_space`'s, at load time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smartassign.config import Config, Domain, override_in, parse_space


def check_space(cfg: Config) -> dict[str, Domain]:
    """:func:`parse_space` plus every value / bound tried in the whole base configuration.

    Raises :class:`~smartassign.config.ConfigError` naming ``tune.search_space.<key>``.
    """
    space = parse_space(cfg.tune.search_space)
    for key, domain in space.items():
        for value in domain.values:
            where = f"tune.search_space.{key}: value {value!r} is invalid with this configuration"
            override_in(cfg, {key: value}, where)
    return space


def param_space(space: Mapping[str, Domain]) -> dict[str, Any]:
    """The ``param_space`` of the Tuner: dotted key -> Ray Tune domain."""
    return {key: domain.to_tune() for key, domain in space.items()}
