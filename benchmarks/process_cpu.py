"""CPU time of this process's descendants while a block runs, split into groups by command line.

Imported by ``train.py`` to show where the Ray overhead goes: the training worker (and its
data-loader processes, which inherit its process title) against Ray's own processes.
Processes that end inside the block are counted up to the last sample, taken every
``interval`` seconds.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil


@dataclass
class ProcessCpu:
    """CPU seconds per group of descendant processes, sampled in a background thread.

    ``classify`` maps a command line to a group name. A process is counted in the group of
    its last non-empty command line (Ray renames an idle worker when it takes a task; a
    process that is exiting reads as an empty one), from the CPU time it had when first seen
    (zero if it started inside the block).
    """

    classify: Callable[[str], str]
    interval: float = 0.5
    _first: dict[int, float] = field(default_factory=dict)
    _last: dict[int, tuple[str, float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = 0.0
    wall_s: float = 0.0

    def _sample(self, baseline: bool) -> None:
        for process in psutil.Process().children(recursive=True):
            try:
                times = process.cpu_times()
                command = " ".join(process.cmdline())
            except psutil.Error:
                continue
            used = times.user + times.system
            self._first.setdefault(process.pid, used if baseline else 0.0)
            known = self._last.get(process.pid)
            group = known[0] if known and not command else self.classify(command)
            self._last[process.pid] = (group, used)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample(baseline=False)

    def __enter__(self) -> ProcessCpu:
        self._sample(baseline=True)
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sample(baseline=False)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.wall_s = time.perf_counter() - self._started

    def seconds(self) -> dict[str, float]:
        """CPU seconds per group over the block."""
        totals: dict[str, float] = {}
        for pid, (group, used) in self._last.items():
            totals[group] = totals.get(group, 0.0) + used - self._first[pid]
        return totals

    def machine_share(self) -> dict[str, float]:
        """Each group's CPU seconds as a fraction of the machine's capacity (cores x wall)."""
        capacity = self.wall_s * (os.cpu_count() or 1)
        return {group: used / capacity for group, used in self.seconds().items()}
