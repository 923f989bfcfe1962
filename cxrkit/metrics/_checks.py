"""Input checks the metric functions share: matching shapes, finite values, batching."""

from __future__ import annotations

import numpy as np


class UndefinedMetric(ValueError):
    """A metric that has no value for this input (an all-zero or constant map, an empty mask).

    Evaluations count such images as undefined; every other ValueError (mismatched shapes,
    NaNs, negative maps) is a wiring error and propagates.
    """


def pair(a, b, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, bool]:
    """Two (H, W) or (B, H, W) maps as float64 (B, H*W) arrays, and whether a batch came in.

    A trailing channel axis of 1 is dropped. Raises ValueError on mismatched shapes or
    non-finite values.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim in (3, 4) and a.shape[-1] == 1 and a.ndim == b.ndim:
        a, b = a[..., 0], b[..., 0]
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} {a.shape} and {names[1]} {b.shape} differ in shape")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (B, H, W) maps, got shape {a.shape}")
    for name, x in zip(names, (a, b), strict=True):
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    batched = a.ndim == 3
    if not batched:
        a, b = a[None], b[None]
    return a.reshape(len(a), -1), b.reshape(len(b), -1), batched


def unbatch(values: np.ndarray, batched: bool):
    """Per-image results: the array for a batch, a float for a single map."""
    return values if batched else float(values[0])
