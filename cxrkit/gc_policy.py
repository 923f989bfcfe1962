"""The cyclic garbage collector's policy in cxrkit's own processes: the command line and a
run's side process (:mod:`cxrkit.recipes.side_process`). A library caller keeps its own.

Tracing a model for TensorFlow leaves millions of long-lived Python objects (a DenseNet201
training step's graph, its layers, their ops), and every full collection walks all of them to
find little garbage: 13 full collections took 4.4 s of the mlmi2024 demo's main process, up to
1.1 s each. :func:`for_traced_models` makes them a hundred times rarer (Python runs one after
every ``threshold[2]`` collections of the middle generation and once the objects that survived
since the last grew by a quarter; the threshold goes from 10 to 1000), while the two young
generations, where nearly all garbage dies, are collected as before. The demo then runs no full
collection at all, for ~300 MB more resident memory. :func:`at_exit` spares the collections the
interpreter makes while it shuts down (1.5 s after one DenseNet201 trace, 4 s after the demo).
"""

from __future__ import annotations

import gc

FULL_COLLECTION_THRESHOLD = 1000


def for_traced_models() -> None:
    """Full collections after every :data:`FULL_COLLECTION_THRESHOLD` middle-generation ones."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_THRESHOLD)


def at_exit() -> None:
    """Freezes every live object out of the collector, for a process that is about to end:
    its files and TensorBoard writers are closed, and reference counting still finalises
    whatever is not in a cycle; the shutdown's collections would only free memory that the
    exit frees anyway."""
    gc.freeze()
