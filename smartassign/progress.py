"""Progress of long loops: a tqdm bar on a terminal, whole lines in a log.

In a non-terminal stream (``dvc repro``, CI, Ray job logs) a tqdm bar writes its
carriage-return updates as they come, thousands of them for a long loop. There,
:func:`progress` prints one line every ``LOG_STEP`` of the work instead:
``evaluate test: 40/120 (33 %), 12.5 img/s, 0:00:03``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

from tqdm import tqdm

Item = TypeVar("Item")

LOG_STEP = 0.1
"""Share of the work between two progress lines in a log."""


def progress(
    items: Iterable[Item],
    *,
    desc: str,
    unit: str,
    total: int | None = None,
    enabled: bool = True,
    stream: TextIO | None = None,
) -> Iterator[Item]:
    """``items`` with progress shown on ``stream`` (default stderr): a tqdm bar when it is
    a terminal, else a line every ``LOG_STEP`` of ``total`` (``len(items)`` by default;
    with no length, no lines). Nothing when not ``enabled``."""
    stream = stream or sys.stderr
    if not enabled:
        yield from items
        return
    if stream.isatty():
        yield from tqdm(items, desc=desc, unit=unit, total=total, file=stream)
        return
    if total is None:
        total = len(items) if hasattr(items, "__len__") else 0  # type: ignore[arg-type]
    start, shown = time.perf_counter(), 0
    for done, item in enumerate(items, start=1):
        yield item
        if total and (done == total or (done - shown) >= max(1, round(total * LOG_STEP))):
            shown = done
            seconds = time.perf_counter() - start
            rate = done / seconds if seconds > 0 else 0.0
            clock = time.strftime("%H:%M:%S", time.gmtime(seconds))
            print(
                f"{desc}: {done}/{total} ({100 * done // total} %), {rate:.1f} {unit}/s, {clock}",
                file=stream,
                flush=True,
            )
