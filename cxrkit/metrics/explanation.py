"""Grad-CAM against a ground-truth mask: DiffGradCAM and the Effective Heat Ratio (EHR).

Conventions of the MLMI 2023 study (docs/study.md, 2023 §3.3); ``heat`` in [0, 1]:

- ``diff_gradcam`` = mean heat inside the mask − mean heat outside it. An empty (or full)
  mask leaves one side undefined: :class:`~cxrkit.metrics.UndefinedMetric` naming the image.
- ``ehr_curve`` / ``ehr_auc`` (Wollek et al. 2023): thresholds ``t_k = k / steps``,
  k = 0 … steps − 1; ``EHR(t) = |{heat >= t} ∩ mask| / |{heat >= t}|`` (0 when no pixel
  passes); the AUC is the trapezoidal area under EHR over the ``t_k``. An all-zero heatmap
  passes only at t = 0, where EHR is the mask's area fraction. ``weighted=True`` is a
  heat-weighted variant of cxrkit's own (heat below 0.1 set to 0, heat sums instead of pixel
  counts); it is not InputIBA's EffectiveHeatRatios (docs/metrics.md).
"""

from __future__ import annotations

import numpy as np

from cxrkit.metrics._checks import UndefinedMetric, pair, unbatch


def _binary(mask: np.ndarray) -> np.ndarray:
    return mask > 0.5


def diff_gradcam(heat, mask):
    """Mean heat inside minus outside the mask, per image (float, or (B,) for a batch)."""
    heat, mask, batched = pair(heat, mask, ("heat", "mask"))
    inside = _binary(mask)
    counts = inside.sum(axis=1)
    bad = np.flatnonzero((counts == 0) | (counts == inside.shape[1]))
    if bad.size:
        raise UndefinedMetric(f"image(s) {bad.tolist()}: mask is empty or covers the whole image; "
                         "DiffGradCAM needs pixels inside and outside")
    mean_in = (heat * inside).sum(axis=1) / counts
    mean_out = (heat * ~inside).sum(axis=1) / (inside.shape[1] - counts)
    return unbatch(mean_in - mean_out, batched)


def thresholds(steps: int = 100) -> np.ndarray:
    """The EHR thresholds ``k / steps`` for k = 0 … steps − 1."""
    if steps < 2:
        raise ValueError("steps must be at least 2")
    return np.arange(steps) / steps


def _ehr(heat, mask, steps: int, weighted: bool) -> tuple[np.ndarray, bool]:
    heat, mask, batched = pair(heat, mask, ("heat", "mask"))
    t = thresholds(steps)
    inside = _binary(mask)
    curves = np.empty((len(heat), steps))
    for i, (h, m) in enumerate(zip(heat, inside, strict=True)):
        if weighted:
            h = np.where(h < 0.1, 0.0, h)
            passing = h[None, :] >= t[:, None]
            total = (passing * h).sum(axis=1)
            hit = (passing * (h * m)).sum(axis=1)
        else:  # counts of pixels >= t from sorted values: O(N log N)
            ordered, ordered_in = np.sort(h), np.sort(h[m])
            total = len(h) - np.searchsorted(ordered, t, side="left")
            hit = len(ordered_in) - np.searchsorted(ordered_in, t, side="left")
        curves[i] = np.where(total > 0, hit / np.where(total > 0, total, 1), 0.0)
    return curves, batched


def ehr_curve(heat, mask, *, steps: int = 100, weighted: bool = False) -> np.ndarray:
    """EHR at each threshold: (steps,) for one map, (B, steps) for a batch."""
    curves, batched = _ehr(heat, mask, steps, weighted)
    return curves if batched else curves[0]


def ehr_auc(heat, mask, *, steps: int = 100, weighted: bool = False):
    """Trapezoidal area under :func:`ehr_curve` over its thresholds."""
    curves, batched = _ehr(heat, mask, steps, weighted)
    return unbatch(np.trapezoid(curves, thresholds(steps), axis=1), batched)
