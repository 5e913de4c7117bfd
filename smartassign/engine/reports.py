"""Files the training stage leaves for DVC: final metrics and per-epoch curves."""

from __future__ import annotations

import json
from pathlib import Path

from smartassign.engine.run import TrainResult


def write_train_reports(result: TrainResult, out_dir: str | Path) -> None:
    """``metrics.json`` (final validation metrics, DVC metrics), ``history.json`` (training
    metrics, one row per epoch) and ``validation.json`` (validation metrics, one row per
    validated epoch: every ``train.val_every`` and the last); the last two are DVC plots,
    which need every row of a file to carry the plotted keys."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = {key: round(value, 4) for key, value in result.metrics.items()}
    (out / "metrics.json").write_text(json.dumps(final, indent=2, sort_keys=True) + "\n")
    rows: dict[str, list[dict[str, float]]] = {"train": [], "val": []}
    for epoch, metrics in enumerate(result.history, start=1):
        for split, split_rows in rows.items():
            values = {k: round(v, 4) for k, v in metrics.items() if k.startswith(f"{split}/")}
            if values:
                split_rows.append({"epoch": epoch, **values})
    (out / "history.json").write_text(json.dumps(rows["train"], indent=2) + "\n")
    (out / "validation.json").write_text(json.dumps(rows["val"], indent=2) + "\n")
