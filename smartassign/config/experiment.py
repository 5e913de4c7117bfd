"""Named experiments: override files laid over ``params.yaml``.

An experiment is a YAML file with the same sections as ``params.yaml`` holding only the
keys it changes (``experiments/paper.yaml``: the paper's training protocol). It is chosen by
the top-level ``experiment`` key of ``params.yaml`` (``dvc exp run -S experiment=paper``) or
by ``--experiment`` on the command line, merged key by key over the params file and then
validated as one :class:`~smartassign.config.Config`, so a misspelt key in it is refused
like one in ``params.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from smartassign.config.base import ConfigError

EXPERIMENTS_DIR = "experiments"
"""Folder of the named experiments, beside the params file."""


def experiment_file(name: str, params_dir: Path) -> Path:
    """The file of experiment ``name``: ``experiments/<name>.yaml`` beside the params file,
    or ``name`` itself when it is a path to a ``.yaml`` file."""
    folder = params_dir / EXPERIMENTS_DIR
    path = Path(name) if name.endswith((".yaml", ".yml")) else folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        raise ConfigError(
            f"experiment: {name!r} not found ({path}); known experiments in {folder}: "
            f"{', '.join(known) or 'none'}"
        )
    return path


def read_experiment(path: Path) -> dict[str, Any]:
    """The override tree of an experiment file (sections of ``params.yaml``)."""
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(tree).__name__}")
    if "experiment" in tree:
        raise ConfigError(f"{path}: experiment: an experiment file cannot name another one")
    return dict(tree)


def merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay`` laid over it: mappings merged key by key, anything else
    (numbers, strings, lists such as ``data.datasets``) replaced whole."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged
