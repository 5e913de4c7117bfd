"""The prepare report: pair counts, quality of the degraded inputs, skipped and fixed files.

``data/report.json`` doubles as the DVC metrics file of the prepare stage: DVC shows its
numbers (``pairs.<split>.<dataset>.<task>``, ``quality.<split>.<dataset>.<task>.psnr_y``,
``skipped.<kind>``, ...) and ignores the ``issues`` list, which names every file.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smartassign.data.common import SPLITS, Issue, seeded_subset
from smartassign.data.manifest import Record, load_pair
from smartassign.metrics import psnr, ssim

SSIM_MIN_SIDE = 11
"""Pairs smaller than the SSIM window are left out of the quality scores."""

IDENTICAL_PSNR = 100.0
"""PSNR reported for a pair whose input equals its target (the true value is infinite)."""

Nested = dict[str, dict[str, dict[str, Any]]]


@dataclass
class PrepareReport:
    """What the prepare stage wrote, measured and left out."""

    root: Path
    records: dict[str, list[Record]]
    quality: Nested = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    @property
    def counts(self) -> Nested:
        """Pairs per split, data set and task."""
        counts: Nested = {}
        for split, records in self.records.items():
            for record in records:
                cell = counts.setdefault(split, {}).setdefault(record.dataset, {})
                cell[record.task] = cell.get(record.task, 0) + 1
        return counts

    @property
    def skipped(self) -> list[Issue]:
        """Files left out, with the reason."""
        return [issue for issue in self.issues if issue.action == "skipped"]

    @property
    def fixed(self) -> list[Issue]:
        """Files used after a safe conversion (grey -> RGB, EXIF rotation, ...)."""
        return [issue for issue in self.issues if issue.action == "fixed"]

    def to_dict(self) -> dict[str, Any]:
        """The content of ``report.json``."""
        return {
            "pairs": self.counts,
            "quality": self.quality,
            "skipped": _by_kind(self.skipped),
            "fixed": _by_kind(self.fixed),
            "issues": [issue.to_dict() for issue in self.issues],
        }

    def write(self, path: Path) -> None:
        """Write :meth:`to_dict` as JSON."""
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", "utf-8")

    def summary(self) -> str:
        """A few lines for the terminal."""
        totals = {split: len(self.records.get(split, [])) for split in SPLITS}
        lines = [
            f"prepared {sum(totals.values())} pairs in {self.root} ("
            + ", ".join(f"{split} {count}" for split, count in totals.items())
            + ")"
        ]
        for split, datasets in self.counts.items():
            for dataset, tasks in datasets.items():
                cells = []
                for task, count in tasks.items():
                    scores = self.quality.get(split, {}).get(dataset, {}).get(task)
                    score = f", input PSNR-Y {scores['psnr_y']:.2f} dB" if scores else ""
                    cells.append(f"{task} {count}{score}")
                lines.append(f"  {split:5s} {dataset}: " + "; ".join(cells))
        for action, issues in (("skipped", self.skipped), ("fixed", self.fixed)):
            if issues:
                kinds = sorted(Counter(issue.kind for issue in issues).items())
                listed = ", ".join(f"{kind} {count}" for kind, count in kinds)
                lines.append(
                    f"{action} {len(issues)} files ({listed}); see {self.root / 'report.json'}"
                )
        return "\n".join(lines)


def _by_kind(issues: list[Issue]) -> dict[str, int]:
    return {"total": len(issues), **Counter(issue.kind for issue in issues)}


def score_quality(
    records: Iterable[Record],
    root: Path,
    *,
    max_pairs: int,
    seed: int,
    workers: int = 1,
    progress: bool = False,
) -> Nested:
    """Mean PSNR / SSIM (RGB and Y) of degraded input vs clean target per split, set, task.

    At most ``max_pairs`` pairs per cell (``0`` = all), drawn with a seeded generator;
    scored on ``workers`` threads (the metrics release the GIL).
    """
    from smartassign.progress import progress as show

    cells: dict[tuple[str, str, str], list[Record]] = {}
    for record in records:
        cells.setdefault((record.split, record.dataset, record.task), []).append(record)
    chosen = []
    for key, members in cells.items():
        rng = np.random.default_rng([seed, zlib.crc32("/".join(key).encode())])
        chosen += [(key, member) for member in seeded_subset(members, max_pairs, rng)]
    scores: dict[tuple[str, str, str], list[list[float]]] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda item: _score(item[1], root), chosen)
        for (key, _), row in zip(
            chosen,
            show(results, total=len(chosen), desc="quality", unit="pair", enabled=progress),
            strict=True,
        ):
            if row is not None:
                scores.setdefault(key, []).append(row)
    quality: Nested = {}
    for (split, dataset, task), rows in scores.items():
        means = np.mean(np.array(rows), axis=0)
        quality.setdefault(split, {}).setdefault(dataset, {})[task] = {
            "pairs": len(rows),
            **{
                name: round(float(value), 4)
                for name, value in zip(("psnr", "ssim", "psnr_y", "ssim_y"), means, strict=True)
            },
        }
    return quality


def _score(record: Record, root: Path) -> list[float] | None:
    """PSNR, SSIM, PSNR-Y, SSIM-Y of one pair; ``None`` below the SSIM window size."""
    degraded, clean = load_pair(record, root)
    if min(clean.shape[:2]) < SSIM_MIN_SIDE:
        return None
    return [
        min(psnr(degraded, clean), IDENTICAL_PSNR),
        ssim(degraded, clean),
        min(psnr(degraded, clean, y_channel=True), IDENTICAL_PSNR),
        ssim(degraded, clean, y_channel=True),
    ]
