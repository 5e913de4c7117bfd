"""The paper's Tables 1 and 2 beside ours: ``paper_report.md`` of ``smartassign evaluate``.

When the evaluated split holds benchmarks of the paper (configured under
``data.datasets`` with their layouts), :func:`paper_report` lays out Table 1 (deraining:
Rain-streak, Rain1200, Real-rain) and Table 2 (desnowing: Snow100K-L, SRRS, CSD) with the
published SmartAssign PSNR / SSIM of each test set beside this model's, on RGB and on the Y
channel (the paper does not say which it used).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from smartassign.config import Config


class Published(NamedTuple):
    """A test set of the paper and SmartAssign's published PSNR / SSIM on it."""

    table: int
    name: str
    psnr: float
    ssim: float


PUBLISHED: dict[str, Published] = {
    "rain_streak": Published(1, "Rain-streak", 33.16, 0.931),
    "rain1200": Published(1, "Rain1200", 33.07, 0.927),
    "spa": Published(1, "Real-rain", 36.55, 0.962),
    "snow100k": Published(2, "Snow100K-L", 29.45, 0.923),
    "srrs": Published(2, "SRRS", 30.53, 0.931),
    "csd": Published(2, "CSD", 32.50, 0.957),
}
"""Data-set layout -> the paper's Table 1 (rain) / Table 2 (snow) row of SmartAssign."""

TASK_OF_TABLE = {1: "rain", 2: "snow"}


def paper_report(cfg: Config, metrics: Mapping[str, float], split: str = "test") -> str | None:
    """Markdown of Tables 1 and 2 for the benchmarks of ``cfg.data.datasets`` that
    ``metrics`` scored on ``split``; ``None`` when it scored none of the paper's."""
    rows: dict[int, list[str]] = {1: [], 2: []}
    for dataset in cfg.data.datasets:
        published = PUBLISHED.get(dataset.layout)
        if published is None:
            continue
        key = f"{split}/{dataset.name}/{TASK_OF_TABLE[published.table]}"
        if f"{key}/psnr" not in metrics:
            continue
        psnr, ssim = metrics[f"{key}/psnr"], metrics[f"{key}/ssim"]
        rows[published.table].append(
            f"| {published.name} (`{dataset.name}`) | {int(metrics[f'{key}/count'])} "
            f"| {published.psnr:.2f} / {published.ssim:.3f} | {psnr:.2f} / {ssim:.3f} "
            f"| {metrics[f'{key}/psnr_y']:.2f} / {metrics[f'{key}/ssim_y']:.3f} "
            f"| {psnr - published.psnr:+.2f} |"
        )
    if not rows[1] and not rows[2]:
        return None
    header = [
        "| test set | images | paper PSNR / SSIM | ours PSNR / SSIM (RGB) | ours PSNR-Y / SSIM-Y "
        "| PSNR vs paper |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines = [f"# The paper's tables beside this model ({split} split)", ""]
    titles = {1: "Table 1: deraining", 2: "Table 2: desnowing"}
    for table in (1, 2):
        if rows[table]:
            lines += [f"## {titles[table]}", "", *header, *rows[table], ""]
    lines.append(
        "Paper: SmartAssign's published numbers (Tables 1 and 2); it does not say whether "
        "PSNR / SSIM were taken on RGB or on the Y channel, so both of ours are given."
    )
    return "\n".join(lines) + "\n"
