"""Static gaze heatmaps and the image geometry they share, for the MLMI 2024 study.

Geometry: the ``egd-cxr`` convention's (:class:`cxrkit.preprocessing.Geometry`): an original
``(rows, cols)`` image is zero-padded at the bottom / right to the target aspect ratio (the
study pads to 3200 x 2560 and keeps every fifth pixel to get 640 x 512) and resampled to the
target size. The stored images and :func:`gaze_heatmap` use the same mapping, so a fixation on
a structure lands on that structure in both.

The study's heatmap recipe (:func:`reference_heatmap`, the MT-UNet code): count gaze samples per
native pixel, blur with a 501-pixel Gaussian kernel (OpenCV sigma 0, i.e. sigma = 75.5 px),
divide by the max, pad, subsample and min-max normalise. :func:`gaze_heatmap` computes the same
map on the target grid directly: each point is splatted bilinearly at its scaled position and
blurred there with the scaled sigma and the same reflect-101 border, which costs a few
milliseconds instead of a second (``benchmarks/bench_heatmap.py`` measures speed and the
correlation with the reference).
"""

from __future__ import annotations

import cv2
import numpy as np

from cxrkit.preprocessing import Geometry, min_max

TARGET = (640, 512)  # rows, cols of the 2024 study's inputs
STUDY_KERNEL = 501


def kernel_sigma(ksize: int) -> float:
    """The sigma OpenCV uses for a Gaussian kernel of ``ksize`` when given sigma 0."""
    return 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8


STUDY_SIGMA = kernel_sigma(STUDY_KERNEL)  # 75.5 original pixels


def on_image(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Mask of the points that fall on the image (gaze off it is negative or past the edge)."""
    rows, cols = shape
    return (x >= 0) & (y >= 0) & (x < cols) & (y < rows)


def gaze_heatmap(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None,
                 shape: tuple[int, int], *, target: tuple[int, int] = TARGET,
                 sigma: float = STUDY_SIGMA) -> np.ndarray:
    """A static gaze heatmap on the target grid, float32 in [0, 1].

    Args:
        x, y: original-pixel column / row of each gaze sample or fixation; points off the
            image are dropped.
        weights: per-point weight (e.g. fixation duration), ``None`` to count points.
        shape: the original image's (rows, cols).
        sigma: Gaussian sigma in original pixels.

    Raises:
        ValueError: no point falls on the image, or their weights are not finite,
            non-negative and of positive sum.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = on_image(x, y, shape)
    if not keep.any():
        raise ValueError("no gaze point falls on the image")
    weights = np.ones(keep.sum()) if weights is None else np.asarray(weights, float)[keep]
    if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
        raise ValueError("the gaze points on the image need finite, non-negative weights "
                         "with a positive sum (durations all 0?)")
    geometry = Geometry(shape, target)
    rows, cols = geometry.region
    # Native pixel i sits at coarse position i * scale; splat each point over its 4 neighbours.
    cx, cy = x[keep] * geometry.scale, y[keep] * geometry.scale
    x0, y0 = np.floor(cx).astype(int), np.floor(cy).astype(int)
    fx, fy = cx - x0, cy - y0
    grid = np.zeros((rows + 1, cols + 1), np.float64)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(grid, (np.minimum(y0 + dy, rows), np.minimum(x0 + dx, cols)),
                      weights * wy * wx)
    grid = grid[:rows, :cols].astype(np.float32)
    blurred = cv2.GaussianBlur(grid, (0, 0), sigma * geometry.scale,
                               borderType=cv2.BORDER_REFLECT_101)
    return min_max(geometry.place(blurred))


def reference_heatmap(x: np.ndarray, y: np.ndarray, shape: tuple[int, int], *,
                      target: tuple[int, int] = TARGET, ksize: int = STUDY_KERNEL) -> np.ndarray:
    """The study's recipe at native resolution (slow; the yardstick for :func:`gaze_heatmap`).

    Counts points per native pixel, blurs with a ``ksize`` Gaussian kernel (sigma from OpenCV's
    rule), divides by the max, then samples the native pixel under each target pixel of the
    image region (for a 3200 x 2560 canvas that is exactly the study's "keep every fifth
    pixel"), pads with zeros and min-max normalises.
    """
    x, y = np.asarray(x), np.asarray(y)
    keep = on_image(x, y, shape)
    counts = np.zeros(shape, np.float32)
    np.add.at(counts, (y[keep].astype(int), x[keep].astype(int)), 1.0)
    blurred = cv2.GaussianBlur(counts, (ksize, ksize), 0)
    blurred /= blurred.max()
    geometry = Geometry(shape, target)
    rows, cols = geometry.region
    row_index = np.minimum(np.round(np.arange(rows) / geometry.scale).astype(int), shape[0] - 1)
    col_index = np.minimum(np.round(np.arange(cols) / geometry.scale).astype(int), shape[1] - 1)
    return min_max(geometry.place(blurred[np.ix_(row_index, col_index)]))
