"""Files the training stage leaves for DVC: final metrics and per-epoch curves."""

from __future__ import annotations

import json
from pathlib import Path

from smartassign.engine.run import TrainResult


def write_train_reports(result: TrainResult, out_dir: str | Path) -> None:
    """``metrics.json`` (final validation metrics, DVC metrics) and ``history.json``
    (one row per epoch, DVC plots)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = {key: round(value, 4) for key, value in result.metrics.items()}
    (out / "metrics.json").write_text(json.dumps(final, indent=2, sort_keys=True) + "\n")
    rows = [
        {"epoch": epoch, **{key: round(value, 4) for key, value in metrics.items()}}
        for epoch, metrics in enumerate(result.history, start=1)
    ]
    (out / "history.json").write_text(json.dumps(rows, indent=2) + "\n")
