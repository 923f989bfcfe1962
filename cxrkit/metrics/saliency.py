"""Predicted saliency against human attention (Table 4.2 of the MLMI 2024 study).

``P`` is the prediction and ``Q`` the gaze map; each is divided by its own sum first, so any
non-negative maps can be compared (a Grad-CAM map as well as a predicted gaze map):

- ``kl_divergence`` = ``sum Q (log(Q + eps) - log(P + eps))``, eps = 1e-7, gaze as the reference
  distribution (pixels where Q = 0 add nothing) — the training loss' convention;
- ``correlation_coefficient`` (CC) = Pearson correlation of the two maps;
- ``histogram_similarity`` (HS, also called SIM) = ``sum min(P, Q)``, 1 for identical maps;
- ``nss`` = mean of the z-scored prediction at fixated pixels (a binary fixation map).

Lower KL is better; higher CC, HS and NSS are better. An all-zero or negative map makes the
normalisation meaningless, and a constant map has no correlation: those raise
:class:`~cxrkit.metrics.UndefinedMetric` naming the image; negative values raise ValueError.
"""

from __future__ import annotations

import numpy as np

from cxrkit.metrics._checks import UndefinedMetric, pair, unbatch

EPSILON = 1e-7


def _distributions(pred, gaze):
    p, q, batched = pair(pred, gaze, ("prediction", "gaze"))
    for name, x in (("prediction", p), ("gaze", q)):
        if (x < 0).any():
            raise ValueError(f"{name} has negative values; saliency maps must be >= 0")
        empty = np.flatnonzero(x.sum(axis=1) <= 0)
        if empty.size:
            raise UndefinedMetric(f"{name} is all zero in image(s) {empty.tolist()}")
    return p / p.sum(axis=1, keepdims=True), q / q.sum(axis=1, keepdims=True), batched


def kl_divergence(pred, gaze):
    """KL(gaze || prediction) per image."""
    p, q, batched = _distributions(pred, gaze)
    return unbatch((q * (np.log(q + EPSILON) - np.log(p + EPSILON))).sum(axis=1), batched)


def correlation_coefficient(pred, gaze):
    """Pearson's CC per image."""
    p, q, batched = pair(pred, gaze, ("prediction", "gaze"))
    pc, qc = p - p.mean(axis=1, keepdims=True), q - q.mean(axis=1, keepdims=True)
    norms = np.sqrt((pc ** 2).sum(axis=1) * (qc ** 2).sum(axis=1))
    flat = np.flatnonzero(norms == 0)
    if flat.size:
        raise UndefinedMetric(f"constant map in image(s) {flat.tolist()}: CC is undefined")
    return unbatch((pc * qc).sum(axis=1) / norms, batched)


def histogram_similarity(pred, gaze):
    """HS / SIM per image: the sum of the element-wise minimum of the two distributions."""
    p, q, batched = _distributions(pred, gaze)
    return unbatch(np.minimum(p, q).sum(axis=1), batched)


def nss(pred, fixations):
    """Normalised scanpath saliency: mean z-scored prediction over fixated pixels."""
    p, f, batched = pair(pred, fixations, ("prediction", "fixations"))
    fixated = f > 0.5
    none = np.flatnonzero(fixated.sum(axis=1) == 0)
    if none.size:
        raise UndefinedMetric(f"no fixated pixel in image(s) {none.tolist()}")
    std = p.std(axis=1, keepdims=True)
    z = (p - p.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
    return unbatch((z * fixated).sum(axis=1) / fixated.sum(axis=1), batched)


cc = correlation_coefficient
sim = histogram_similarity
