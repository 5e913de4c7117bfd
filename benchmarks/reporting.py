"""Writing a benchmark's JSON report: printed, and saved under ``benchmarks/results/``.

Imported by the benchmark scripts of this folder (run as ``python benchmarks/<name>.py``,
which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(report: dict[str, Any], out: str | Path) -> None:
    """Print ``report`` as JSON and write it to ``out`` (folders created)."""
    text = json.dumps(report, indent=2)
    print(text)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
