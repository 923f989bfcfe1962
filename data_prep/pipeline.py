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



def as_reason(reason: str) -> str:
    """The ``failed`` of a worker whose failures are a reason string."""
    return reason


class Guarded:
    """``function(job)``, with an unexpected exception turned into ``failed(reason)``: a bad
    input fails its own job (and is listed by name), never the whole conversion. Picklable when
    both functions are module-level."""

    def __init__(self, function: Callable[[J], R], failed: Callable[[str], R]):
        self.function, self.failed = function, failed

    def __call__(self, job: J) -> R:
        try:
            return self.function(job)
        except Exception as err:  # noqa: BLE001 - one bad input must not stop the others
            return self.failed(f"unexpected {type(err).__name__}: {err}")


def run_jobs(function: Callable[[J], R], jobs: Sequence[J], *, workers: int, label: str,
             show_progress: bool, failed: Callable[[str], R] = as_reason,
             beam_options=None) -> list[R]:
    """``[function(job) for job in jobs]`` on ``workers`` processes, in order, with progress
    (or as an Apache Beam pipeline with ``beam_options``: :func:`data_prep.beam.beam_map`); a
    job that raises an unexpected exception gives ``failed(reason)`` (:class:`Guarded`).

    Workers are spawned (not forked), so a parent that already imported TensorFlow is safe;
    ``function`` must be a module-level function of a module that does not import TensorFlow.
    """
    if beam_options is not None:
        from data_prep.beam import beam_map

        return beam_map(function, list(jobs), beam_options, failed=failed, label=label)
    function = Guarded(function, failed)
    if workers <= 1 or len(jobs) <= 1:
        with track(jobs, label=label, enabled=show_progress) as items:
            return [function(job) for job in items]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        results = pool.map(function, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
        with track(results, label=label, length=len(jobs), enabled=show_progress) as items:
            return list(items)
