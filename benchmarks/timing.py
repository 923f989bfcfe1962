"""Shared timing helpers of the benchmark scripts (run them as ``python benchmarks/NAME.py``).

Machines of our kind differ up to 4x in speed, so a time goal is checked as a ratio to
:func:`calibration` — one compiled DenseNet201 forward pass on 16 images at 224 px (best of 5
after a warm-up) — which took :data:`SLOW_MACHINE_CALIBRATION_S` on the slowest 2-core machine
we know of.
"""

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


SLOW_MACHINE_CALIBRATION_S = 1.64


def calibration() -> float:
    """Seconds of one compiled DenseNet201 forward pass on 16 images at 224 px."""
    import numpy as np

    from cxrkit.files import stderr_silenced

    with stderr_silenced():  # TensorFlow's start-up lines (CUDA probe, oneDNN note)
        import tensorflow as tf

    from cxrkit.models import build_backbone

    model = build_backbone("densenet201", image_size=224)
    forward = tf.function(lambda x: model(x, training=False))
    images = tf.constant(np.random.default_rng(0).random((16, 224, 224, 3), "float32"))
    return best_time(lambda: forward(images).numpy(), 5, warmup=True)


def tracing_calibration() -> float:
    """Seconds to trace one DenseNet201 forward pass (64 px, inference; best of 3): the
    single-threaded Python work that most of a CPU demo is made of, which the compiled
    :func:`calibration` does not follow. Printed for information beside the goal's ratio."""
    import tensorflow as tf

    from cxrkit.models import build_backbone

    model = build_backbone("densenet201", image_size=64)
    spec = tf.TensorSpec((None, 64, 64, 3), tf.float32)
    return best_time(lambda: tf.function(lambda x: model(x, training=False))
                     .get_concrete_function(spec), 3)
