"""The best-params file of a sweep, and training with it (``train.tuned_params``).

``smartassign tune`` writes ``tune.best_params`` (DVC-tracked)::

    sweep: sweep
    trial_id: 5f3a1_00002
    objective: 27.31
    ...
    params:
      loss.lambda1: 0.0123
      model.gkfm_hidden: 32

Two ways to train with them. Through DVC, :func:`dvc_set_args` turns them into ``-S
key=value`` arguments, ``dvc exp run $(smartassign tuned-args)``: the values land in the
experiment's params.yaml, which the train stage tracks key by key, so a new sweep result
retrains. Without DVC, setting ``train.tuned_params`` to that path makes
:func:`apply_tuned` lay ``params`` over the configuration the training driver builds; an
empty ``train.tuned_params`` trains with params.yaml as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from smartassign.config import Config, ConfigError


def plain(value: Any) -> Any:
    """NumPy scalars (as Ray Tune samples them) as Python values, for YAML and pydantic."""
    return value.item() if hasattr(value, "item") else value


def write_best_params(path: str | Path, params: Mapping[str, Any], **about: Any) -> Path:
    """Write the best trial's sampled ``params`` with facts ``about`` it (sweep, objective,
    MLflow run ids) above them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Best trial of a Ray Tune sweep, written by `smartassign tune` (DVC stage tune).\n"
        f"# Train with it: `dvc exp run $(smartassign tuned-args {path.as_posix()})`, or\n"
        f"# set `train.tuned_params: {path.as_posix()}` in params.yaml.\n"
    )
    body = {
        **{key: plain(value) for key, value in about.items()},
        "params": {key: plain(value) for key, value in params.items()},
    }
    path.write_text(header + yaml.safe_dump(body, sort_keys=False))
    return path


def read_best_params(path: str | Path) -> dict[str, Any]:
    """The ``params`` mapping (dotted key -> value) of a best-params file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"train.tuned_params: {path} not found; run `smartassign tune` (DVC stage tune) "
            "first, or set train.tuned_params to '' to train with params.yaml as is"
        )
    tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    params = tree.get("params") if isinstance(tree, Mapping) else None
    if not isinstance(params, Mapping):
        raise ConfigError(f"train.tuned_params: {path} has no 'params' mapping")
    return dict(params)


def apply_tuned(cfg: Config) -> Config:
    """``cfg`` with the tuned params of ``train.tuned_params`` applied (unchanged if empty)."""
    if not cfg.train.tuned_params:
        return cfg
    params = read_best_params(cfg.train.tuned_params)
    try:
        return cfg.override(params)
    except ConfigError as error:
        raise ConfigError(f"train.tuned_params ({cfg.train.tuned_params}): {error}") from None


def dvc_set_args(cfg: Config, path: str | Path) -> list[str]:
    """``["-S", "key=value", ...]`` for ``dvc exp run``, one pair per tuned param of the
    best-params file at ``path``, checked against ``cfg`` first (a key or value the
    config refuses is named here, not in the middle of a DVC run)."""
    params = read_best_params(path)
    try:
        cfg.override(params)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    words: list[str] = []
    for key, value in params.items():
        text = json.dumps(value) if isinstance(value, bool | type(None)) else str(value)
        if not text or any(char.isspace() for char in text):
            raise ConfigError(f"{path}: {key}: {text!r} cannot pass as one -S word")
        words += ["-S", f"{key}={text}"]
    return words
