"""What both converters share: running per-image work on processes, and the skip log."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from cxrkit.errors import InputError
from data_prep.progress import track
from data_prep.records import Skipped

J = TypeVar("J")
R = TypeVar("R")


class SkipLog:
    """Inputs left out, with reasons; in strict mode the first one stops the run instead."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.items: list[Skipped] = []

    def add(self, source: str, reason: str) -> None:
        if self.strict:
            raise InputError(source, f"{reason} (--strict stops at the first problem)")
        self.items.append(Skipped(source, reason))



def run_jobs(function: Callable[[J], R], jobs: Sequence[J], *, workers: int, label: str,
             show_progress: bool) -> list[R]:
    """``[function(job) for job in jobs]`` on ``workers`` processes, in order, with progress.

    Workers are spawned (not forked), so a parent that already imported TensorFlow is safe;
    ``function`` must be a module-level function of a module that does not import TensorFlow.
    """
    if workers <= 1 or len(jobs) <= 1:
        with track(jobs, label=label, enabled=show_progress) as items:
            return [function(job) for job in items]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        results = pool.map(function, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
        with track(results, label=label, length=len(jobs), enabled=show_progress) as items:
            return list(items)
