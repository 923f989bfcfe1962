"""Static gaze heatmaps for the MLMI 2024 study, on the images' own geometry.

Geometry: the ``egd-cxr`` convention's (:class:`cxrkit.preprocessing.Geometry`; by default the
authors' fixed 3200 x 2560 canvas with the image centred, or ``fit``: scaled to fit and padded
bottom / right). The stored images and :func:`gaze_heatmap` use the same mapping, so a
fixation on a structure lands on that structure in both.

The study's heatmap recipe (:func:`reference_heatmap`, the authors' ``Data/hzhu_data_raw.py``):
count gaze samples per native pixel, blur with a 501-pixel Gaussian kernel (OpenCV sigma 0,
i.e. sigma = 75.5 px), divide by the max, place on the canvas, keep every k-th pixel and
min-max normalise. :func:`gaze_heatmap` computes the same map on the target grid directly:
each point is splatted bilinearly at its target position (pixel centres aligned as in the
area-averaged image) and blurred there with the scaled sigma and the same reflect-101 border
at the image's edges, which costs a few milliseconds instead of a second
(``benchmarks/bench_heatmap.py`` measures speed and the correlation with the reference).
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
                 geometry: Geometry, *, sigma: float = STUDY_SIGMA) -> np.ndarray:
    """A static gaze heatmap on ``geometry``'s target grid, float32 in [0, 1].

    Args:
        x, y: original-pixel column / row of each gaze sample or fixation; points off the
            image are dropped.
        weights: per-point weight (e.g. fixation duration), ``None`` to count points.
        geometry: the image's placement (``EgdCxrPreprocessing.geometry(shape)``).
        sigma: Gaussian sigma in original pixels.

    Raises:
        ValueError: no point falls on the image, or their weights are not finite,
            non-negative and of positive sum.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = on_image(x, y, geometry.shape)
    if not keep.any():
        raise ValueError("no gaze point falls on the image")
    weights = np.ones(keep.sum()) if weights is None else np.asarray(weights, float)[keep]
    if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
        raise ValueError("the gaze points on the image need finite, non-negative weights "
                         "with a positive sum (durations all 0?)")
    (sy, sx) = geometry.scale
    blurred = cv2.GaussianBlur(splat(x[keep], y[keep], weights, geometry), (0, 0),
                               sigmaX=sigma * sx, sigmaY=sigma * sy,
                               borderType=cv2.BORDER_REFLECT_101)
    return min_max(geometry.paste(blurred))


def splat(x: np.ndarray, y: np.ndarray, weights: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Points (native column ``x``, row ``y``) with ``weights`` spread bilinearly over the
    four nearest pixels of the image's footprint grid (float32, footprint-sized): native pixel
    centre i + 0.5 lands at target i' + 0.5 = (i + 0.5) * s, measured from the footprint's
    anchor floor(origin), as the area-averaged image."""
    rows, cols = geometry.footprint
    (sy, sx), (oy, ox) = geometry.scale, geometry.origin
    # one margin pixel on each side catches the splats that straddle the edge
    cx = (x + 0.5) * sx - 0.5 + ox % 1 + 1
    cy = (y + 0.5) * sy - 0.5 + oy % 1 + 1
    x0, y0 = np.floor(cx).astype(int), np.floor(cy).astype(int)
    fx, fy = cx - x0, cy - y0
    grid = np.zeros((rows + 3, cols + 3), np.float64)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(grid, (np.clip(y0 + dy, 0, rows + 2), np.clip(x0 + dx, 0, cols + 2)),
                      weights * wy * wx)
    return grid[1: rows + 1, 1: cols + 1].astype(np.float32)


def dwell_map(x: np.ndarray, y: np.ndarray, time: np.ndarray, geometry: Geometry) -> np.ndarray:
    """GazeGNN's gaze input on ``geometry``'s target grid, float32 in [0, 1].

    Their ``read_data.py``: each fixation's dwell time — its ``Time (in secs)`` minus the
    previous fixation's, the first one's own time — is put at its pixel of a zero map the
    size of the image, then log(g + 0.01), min-max (the background, log 0.01, becomes 0).
    Here each on-image fixation adds ``log(dwell + 0.01) - log(0.01)`` (negative dwell
    clipped to 0) bilinearly at its target position, and the map is divided by its maximum:
    their map resampled by area, up to a scale that GazeGNN's patch grid normalises away
    (they write each value into its pixel, so two fixations on one native pixel keep the
    last; here they add, and the 8-bit rounding of their resized map is not repeated).
    A map without usable fixations is all zeros.
    """
    x, y, time = (np.asarray(v, np.float64) for v in (x, y, time))
    dwell = np.diff(time, prepend=0.0)
    value = np.log(np.maximum(dwell, 0.0) + 0.01) - np.log(0.01)
    keep = on_image(x, y, geometry.shape) & np.isfinite(value)
    placed = geometry.paste(splat(x[keep], y[keep], value[keep], geometry))
    top = float(placed.max())
    return placed / top if top > 0 else placed


def reference_heatmap(x: np.ndarray, y: np.ndarray, geometry: Geometry, *,
                      ksize: int = STUDY_KERNEL, sampling: str = "stride") -> np.ndarray:
    """The study's recipe at native resolution (slow; the yardstick for :func:`gaze_heatmap`).

    Counts points per native pixel, blurs with a ``ksize`` Gaussian kernel (sigma from OpenCV's
    rule), divides by the max, then puts the map on the target grid: ``sampling="stride"``
    takes the native pixel at each target pixel's canvas position (for the 3200 x 2560 canvas
    and 640 x 512, exactly the authors' "keep every fifth pixel"); ``"area"`` area-averages,
    as cxrkit resamples the images. Zero outside the image; min-max normalised.
    """
    x, y = np.asarray(x), np.asarray(y)
    keep = on_image(x, y, geometry.shape)
    counts = np.zeros(geometry.shape, np.float32)
    np.add.at(counts, (y[keep].astype(int), x[keep].astype(int)), 1.0)
    blurred = cv2.GaussianBlur(counts, (ksize, ksize), 0)
    blurred /= blurred.max()
    if sampling == "area":
        return min_max(geometry.resample(blurred))
    if sampling != "stride":
        raise ValueError(f"sampling must be 'stride' or 'area', got {sampling!r}")
    index = [np.round((np.arange(t) - o) / s).astype(int)
             for t, o, s in zip(geometry.target, geometry.origin, geometry.scale, strict=True)]
    inside = [(i >= 0) & (i < n) for i, n in zip(index, geometry.shape, strict=True)]
    sampled = blurred[np.ix_(np.clip(index[0], 0, geometry.shape[0] - 1),
                             np.clip(index[1], 0, geometry.shape[1] - 1))]
    return min_max(sampled * np.outer(*inside))
