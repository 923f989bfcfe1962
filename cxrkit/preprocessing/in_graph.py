"""TensorFlow ops that repeat the ``egd-cxr`` record path inside a serving graph.

:func:`egd_from_bytes` decodes a batch of encoded PNG/JPEG strings (mixed formats; colour
becomes grayscale), then does what :meth:`EgdCxrPreprocessing.record_image` and ``normalise``
do, in either placement (:class:`cxrkit.preprocessing.Geometry`): ``centre`` on the fixed
canvas (cropping what overflows) or scale to ``fit`` with zero padding bottom/right; an
OpenCV-``INTER_AREA``-equivalent resize; min-max over the covered pixels; 8-bit quantisation;
/ 255. JPEG goes through ``decode_jpeg`` with
the accurate integer DCT, as OpenCV's decoder (``decode_image``'s default fast DCT differs by
a few grey levels), so the two paths agree within one 8-bit step (tested).
"""

from __future__ import annotations

import tensorflow as tf

from cxrkit.preprocessing.egd_cxr import STUDY_CANVAS


def decode_gray(encoded):
    """One encoded PNG/JPEG to a float32 (rows, cols) array (any scale; min-max follows)."""
    def jpeg():
        return tf.cast(tf.io.decode_jpeg(encoded, channels=1, dct_method="INTEGER_ACCURATE"),
                       tf.float32) / 255.0

    def other():
        return tf.io.decode_image(encoded, channels=1, dtype=tf.float32,
                                  expand_animations=False)

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)[..., 0]


def area_weights(n_in, n_out):
    """(n_out, n_in) box-filter weights: output i averages source [i*s, (i+1)*s), s = n_in /
    n_out, each source pixel weighted by the fraction of it inside the box — OpenCV's
    ``INTER_AREA`` when shrinking (``tf.image.resize(method="area")`` differs from it)."""
    scale = tf.cast(n_in, tf.float64) / tf.cast(n_out, tf.float64)
    start = tf.range(tf.cast(n_out, tf.float64))[:, None] * scale
    source = tf.range(tf.cast(n_in, tf.float64))[None, :]
    overlap = tf.minimum(source + 1.0, start + scale) - tf.maximum(source, start)
    return tf.cast(tf.maximum(overlap, 0.0) / scale, tf.float32)


def resize_area(image, rows, cols):
    """Area resize of a 2-D image to (rows, cols): box filter when shrinking, bilinear when
    enlarging (as ``cv2.INTER_AREA``)."""
    in_rows, in_cols = tf.shape(image)[0], tf.shape(image)[1]
    shrink = tf.logical_and(rows <= in_rows, cols <= in_cols)
    return tf.cond(
        shrink,
        lambda: area_weights(in_rows, rows) @ image @ tf.transpose(area_weights(in_cols, cols)),
        lambda: tf.image.resize(image[..., None], tf.stack([rows, cols]),
                                method="bilinear")[..., 0])


def _min_max_covered(placed, covered_rows, covered_cols):
    """Min-max over the covered window of ``placed``, zero elsewhere (as the numpy path)."""
    (r0, r1), (c0, c1) = covered_rows, covered_cols
    window = placed[r0:r1, c0:c1]
    low, high = tf.reduce_min(window), tf.reduce_max(window)
    window = tf.where(high > low, (window - low) / tf.where(high > low, high - low, 1.0), 0.0)
    target = tf.shape(placed)
    return tf.pad(window, [[r0, target[0] - r1], [c0, target[1] - c1]])


def _fit(image, target):
    rows = tf.cast(tf.shape(image)[0], tf.float32)
    cols = tf.cast(tf.shape(image)[1], tf.float32)
    scale = tf.minimum(target[0] / rows, target[1] / cols)
    region_rows = tf.clip_by_value(tf.cast(tf.round(rows * scale), tf.int32), 1, target[0])
    region_cols = tf.clip_by_value(tf.cast(tf.round(cols * scale), tf.int32), 1, target[1])
    small = resize_area(image, region_rows, region_cols)
    placed = tf.pad(small, [[0, target[0] - region_rows], [0, target[1] - region_cols]])
    return _min_max_covered(placed, (0, region_rows), (0, region_cols))


def _covered(length, canvas, target):
    """(start, stop) on the target axis of an image of ``length`` centred on ``canvas``
    (:attr:`cxrkit.preprocessing.Geometry.covered`)."""
    scale = target / canvas
    origin = tf.cast(tf.truncatediv(canvas - length, 2), tf.float64) * scale
    start = tf.floor(origin)
    stop = start + tf.math.ceil(origin - start + tf.cast(length, tf.float64) * scale - 1e-9)
    clip = lambda v: tf.cast(tf.clip_by_value(v, 0.0, float(target)), tf.int32)  # noqa: E731
    return clip(start), tf.maximum(clip(start), clip(stop))


def _centre(image, target, canvas):
    shape = tf.shape(image)
    pads, crops = [], []
    for axis in range(2):
        before = tf.truncatediv(canvas[axis] - shape[axis], 2)
        after = canvas[axis] - shape[axis] - before
        pads.append([tf.maximum(before, 0), tf.maximum(after, 0)])
        crops.append(tf.maximum(-before, 0))
    placed = tf.pad(image, pads)[crops[0]: crops[0] + canvas[0], crops[1]: crops[1] + canvas[1]]
    placed = tf.ensure_shape(placed, canvas)
    small = resize_area(placed, target[0], target[1])
    return _min_max_covered(small, _covered(shape[0], canvas[0], target[0]),
                            _covered(shape[1], canvas[1], target[1]))


def _egd_one(image, target, placement, canvas):
    image = image - tf.reduce_min(image)
    canvas_map = _fit(image, target) if placement == "fit" else _centre(image, target, canvas)
    quantised = tf.round(canvas_map * 255.0) / 255.0
    return tf.ensure_shape(quantised, target)[..., None]


def egd_from_bytes(encoded, target: tuple[int, int], placement: str = "centre",
                   canvas: tuple[int, int] = STUDY_CANVAS):
    """(B,) encoded PNG/JPEG strings to a (B, rows, cols, 1) float32 batch in [0, 1]."""
    return tf.map_fn(lambda e: _egd_one(decode_gray(e), target, placement, canvas), encoded,
                     fn_output_signature=tf.TensorSpec((*target, 1), tf.float32))
