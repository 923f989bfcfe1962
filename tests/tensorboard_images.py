"""The images of a TF2 image summary in a TensorBoard log folder, decoded (for tests)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import TENSORS, EventAccumulator


def written_images(logdir, tag: str) -> dict[int, np.ndarray]:
    """{step: (N, H, W, C) uint8} of every write of ``tag`` under ``logdir`` (a TF2 image
    summary is a string tensor of width, height and one PNG per image)."""
    accumulator = EventAccumulator(str(logdir), size_guidance={TENSORS: 0}).Reload()
    return {event.step: np.stack([tf.io.decode_png(png).numpy()
                                  for png in tf.make_ndarray(event.tensor_proto)[2:]])
            for event in accumulator.Tensors(tag)}
