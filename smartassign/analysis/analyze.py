"""``smartassign analyze``: the knowledge-assignment analysis of a trained or registered
model on a split (paper Fig. 3), its files and its MLflow record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from smartassign.analysis.collect import ImageKnowledge, collect, degraded_images, split_records
from smartassign.analysis.report import Analysis, analyze_knowledge, write_analysis
from smartassign.config import Config
from smartassign.model import SmartAssign
from smartassign.model_io import load_trained


@dataclass
class AnalyzeResult:
    """The analysis, where its files are and the MLflow run they were logged to."""

    analysis: Analysis
    out_dir: Path
    run_id: str | None


def knowledge_analysis(
    model: SmartAssign,
    trained: Config,
    cfg: Config,
    split: str,
    *,
    progress: bool = False,
) -> tuple[Analysis, list[ImageKnowledge], str]:
    """The analysis of ``model`` (trained with ``trained``) on ``split`` of ``cfg``'s data,
    the collected knowledge and the split's manifest sha256."""
    settings = cfg.analysis
    root = Path(cfg.data.root)
    records, sha256 = split_records(root, split, settings.max_images)
    counts: dict[str, int] = {}
    for record in records:
        counts[record.task] = counts.get(record.task, 0) + 1
    knowledge = (
        collect(
            model,
            degraded_images(records, root),
            trained.model.drm_grid,
            total=len(records),
            progress=progress,
        )
        if model.routing.kinds
        else []
    )
    analysis = analyze_knowledge(knowledge, model.routing.name, split, settings, counts)
    return analysis, knowledge, sha256


def analyze(
    cfg: Config,
    source: str | Path,
    *,
    split: str | None = None,
    out_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    track: bool = True,
) -> AnalyzeResult:
    """Analyse the model at ``source`` on ``split`` (default ``analysis.split``), write the
    files to ``out_dir`` (default ``analysis.out_dir``) and, with ``track``, log them
    (:mod:`.tracking`)."""
    from smartassign.analysis.tracking import log_analysis

    model, trained = load_trained(source)
    model.to(device)
    split = split or cfg.analysis.split
    analysis, records, sha256 = knowledge_analysis(model, trained, cfg, split, progress=progress)
    out = write_analysis(
        analysis, records, cfg.analysis, Path(out_dir or cfg.analysis.out_dir), sha256
    )
    run_id = log_analysis(source, out, analysis.metrics()) if track else None
    return AnalyzeResult(analysis, out, run_id)
