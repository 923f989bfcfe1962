"""Shared timing helper of the benchmark scripts (run them as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import time


def best_time(function, repeats: int, *, warmup: bool = False) -> float:
    """The fastest of ``repeats`` calls of ``function`` in seconds; ``warmup`` makes one
    unmeasured call first (tracing and compilation are not what is measured)."""
    if warmup:
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)
