"""GazeGNN's training augmentation (``ukaukaaaa/GazeGNN`` ``read_data.py``), as one resampling.

Their ``transforms.Compose``: ``RandomRotation((-5, 5))``, ``RandomResizedCrop(224)`` (scale
0.08-1 of the area, aspect ratio 3/4-4/3, torchvision's ten tries then the central crop),
``RandomHorizontalFlip()``; the gaze map takes the very same draws (they restore the RNG state
before transforming it). Here the three are composed into one projective transform per example
(:func:`gazegnn_matrix`) that the reader applies to the image, the target map and the gaze
input alike, bilinearly with zeros outside (torchvision rotates with nearest neighbour and
resizes the crop bilinearly). The crop is resized to the record's size, not to 224 x 224:
the model's own test transform (resize, centre crop; :class:`cxrkit.models.gazegnn.ResizeCrop`)
then takes it to the network's input, at training as at test (docs/study.md, B51).
"""

from __future__ import annotations

import math

import tensorflow as tf

MAX_DEGREES = 5.0
SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
TRIES = 10


def crop_box(seed, height: int, width: int):
    """torchvision's ``RandomResizedCrop.get_params``: ``(top, left, rows, cols)`` int32.

    Up to ten tries of an area share in ``SCALE`` and a log-uniform aspect ratio in ``RATIO``
    (cols = round(sqrt(area * ratio)), rows = round(sqrt(area / ratio))); the first that fits
    is placed uniformly; when none fits, the largest central crop within ``RATIO``.
    ``seed`` is a shape-[2] stateless seed.
    """
    draws = tf.random.stateless_uniform([4, TRIES], seed, 0.0, 1.0)
    area = float(height * width) * (SCALE[0] + (SCALE[1] - SCALE[0]) * draws[0])
    low, high = math.log(RATIO[0]), math.log(RATIO[1])
    ratio = tf.exp(low + (high - low) * draws[1])
    cols = tf.cast(tf.round(tf.sqrt(area * ratio)), tf.int32)
    rows = tf.cast(tf.round(tf.sqrt(area / ratio)), tf.int32)
    fits = (cols > 0) & (cols <= width) & (rows > 0) & (rows <= height)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    top = tf.cast(draws[2, first] * tf.cast(height - rows[first] + 1, tf.float32), tf.int32)
    left = tf.cast(draws[3, first] * tf.cast(width - cols[first] + 1, tf.float32), tf.int32)
    top, left = tf.minimum(top, height - rows[first]), tf.minimum(left, width - cols[first])
    in_ratio = width / height  # the fallback, fixed by the shape
    if in_ratio < RATIO[0]:
        fallback = (width, round(width / RATIO[0]))
    elif in_ratio > RATIO[1]:
        fallback = (round(height * RATIO[1]), height)
    else:
        fallback = (width, height)
    f_cols, f_rows = fallback
    chosen = tf.reduce_any(fits)
    return (tf.where(chosen, top, (height - f_rows) // 2),
            tf.where(chosen, left, (width - f_cols) // 2),
            tf.where(chosen, rows[first], f_rows), tf.where(chosen, cols[first], f_cols))


def compose(angle, box, flip, height: int, width: int):
    """The (8,) projective transform (output pixel -> input point) of rotating the image by
    ``angle`` radians about its centre, cropping ``box`` = (top, left, rows, cols) from the
    rotated image and resizing it to (height, width) (half-pixel centres), then mirroring
    left-right when ``flip``."""
    top, left, rows, cols = (tf.cast(v, tf.float32) for v in box)
    h, w = float(height), float(width)
    sign = tf.where(flip, -1.0, 1.0)
    mirror = tf.stack([[sign, 0.0, tf.where(flip, w - 1.0, 0.0)], [0.0, 1.0, 0.0],
                       [0.0, 0.0, 1.0]])
    sx, sy = cols / w, rows / h
    crop = tf.stack([[sx, 0.0, left + 0.5 * sx - 0.5], [0.0, sy, top + 0.5 * sy - 0.5],
                     [0.0, 0.0, 1.0]])
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    rotate = tf.stack([[cos, -sin, cx - cos * cx + sin * cy], [sin, cos, cy - sin * cx - cos * cy],
                       [0.0, 0.0, 1.0]])
    matrix = rotate @ crop @ mirror
    return tf.reshape(matrix, [9])[:8]


def gazegnn_matrix(seed, height: int, width: int):
    """One example's draw of their augmentation as an (8,) transform (see the module)."""
    angle_flip = tf.random.stateless_uniform([2], tf.random.experimental.stateless_fold_in(
        seed, 11), -1.0, 1.0)
    angle = angle_flip[0] * (MAX_DEGREES * math.pi / 180.0)
    box = crop_box(tf.random.experimental.stateless_fold_in(seed, 12), height, width)
    return compose(angle, box, angle_flip[1] < 0.0, height, width)
