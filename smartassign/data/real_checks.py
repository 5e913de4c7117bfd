"""Real check sets: real benchmark pairs that measure a model, never train the default one.

The folder ``evaluate.real_data`` (``auto``: ``$SMARTASSIGN_REAL_DATA``, else
``../shared/data/real``) holds one sub-folder per check set in its published layout:

==================  ==============================================================
set                 layout
==================  ==============================================================
Rain12              ``rain/rain-NNN.png`` with ``norain/norain-NNN.png``
RainTrainL_10       ``rain-N.png`` beside ``norain-N.png`` (Rain-streak release)
RainTrainH_12       the same
SPA-Data_samples    ``rain/N.png`` with ``norain/N.png``
==================  ==============================================================

A pair whose two images are identical (a defect of the RainTrainL release, pair 6) has no
rain to remove and is left out, with an issue saying so.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smartassign.config import DatasetSpec
from smartassign.data.common import Issue, Pair, identical_pair
from smartassign.data.images import read_rgb
from smartassign.data.layouts import list_pairs

REAL_DATA_ENV = "SMARTASSIGN_REAL_DATA"
"""Environment variable naming the folder of the real check sets (``real_data: auto``)."""

DEFAULT_REAL_DATA = Path("../shared/data/real")
"""Where ``real_data: auto`` looks when the environment variable is unset (from the
repository root)."""

_PAIRED = {"layout": "paired", "task": "rain", "input_dir": "rain", "target_dir": "norain"}
_LAYOUTS: dict[str, dict[str, str]] = {
    "Rain12": {**_PAIRED, "match": "prefix", "split": "test"},
    "RainTrainL_10": {"layout": "rain_streak"},
    "RainTrainH_12": {"layout": "rain_streak"},
    "SPA-Data_samples": {**_PAIRED, "match": "exact", "split": "test"},
}


def real_data_root(setting: str) -> Path | None:
    """The folder of ``evaluate.real_data``: ``None`` for ``none``; for ``auto`` the
    environment variable's folder or the default one."""
    if setting == "none":
        return None
    if setting == "auto":
        return Path(os.environ.get(REAL_DATA_ENV) or DEFAULT_REAL_DATA).expanduser()
    return Path(setting).expanduser()


@dataclass(frozen=True)
class CheckPair:
    """One decoded real pair of a check set."""

    dataset: str
    task: str
    name: str
    degraded: np.ndarray
    clean: np.ndarray


@dataclass(frozen=True)
class CheckSets:
    """The pairs found, what was left out, the sets absent, and a hash of what was read."""

    pairs: list[CheckPair]
    issues: list[Issue]
    missing: list[str]
    sha256: str


def check_set_spec(name: str, root: Path) -> DatasetSpec:
    """The layout of check set ``name`` inside the real-data folder ``root``."""
    return DatasetSpec(name=name, root=str(root / name), **_LAYOUTS[name])


def unusable(pair: Pair, degraded: np.ndarray, clean: np.ndarray, dataset: str) -> Issue | None:
    """Why a decoded pair cannot be scored (sizes differ, or input and target hold the same
    pixels: nothing to restore), as an issue; ``None`` when it can."""
    if degraded.shape != clean.shape:
        reason = (
            f"input {degraded.shape[1]}x{degraded.shape[0]} and target {pair.target.name} "
            f"{clean.shape[1]}x{clean.shape[0]} differ in size"
        )
        return Issue(dataset, str(pair.input), "size_mismatch", reason, "skipped")
    return identical_pair(pair, degraded, clean, dataset)


def load_check_sets(root: Path | None, names: tuple[str, ...]) -> CheckSets:
    """Decode the pairs of every check set of ``names`` present under ``root``."""
    pairs: list[CheckPair] = []
    issues: list[Issue] = []
    missing: list[str] = []
    digest = hashlib.sha256()
    for name in names:
        if root is None or not (root / name).is_dir():
            missing.append(name)
            continue
        spec = check_set_spec(name, root)
        listed, more_issues = list_pairs(spec)
        issues += more_issues
        for pair in listed:
            degraded, clean = read_rgb(pair.input).pixels, read_rgb(pair.target).pixels
            issue = unusable(pair, degraded, clean, name)
            if issue is not None:
                issues.append(issue)
                continue
            digest.update(f"{name}/{pair.input.name}".encode())
            digest.update(degraded.tobytes())
            digest.update(clean.tobytes())
            pairs.append(CheckPair(name, pair.task, pair.input.stem, degraded, clean))
    return CheckSets(pairs, issues, missing, digest.hexdigest())


def missing_line(checks: CheckSets, root: Path | None) -> str | None:
    """The one line naming the check sets that were not found, or ``None``."""
    if not checks.missing:
        return None
    where = "evaluate.real_data is none" if root is None else f"not found under {root}"
    return (
        f"real check sets skipped ({where}): {', '.join(checks.missing)}; set "
        f"${REAL_DATA_ENV} or evaluate.real_data to the folder that holds them"
    )
