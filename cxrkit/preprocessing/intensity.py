"""Intensity helpers of the conventions (numpy / OpenCV): 8-bit scaling, min-max, CLAHE."""

from __future__ import annotations

import cv2
import numpy as np


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Scale an image to 0-255 over its own range (a constant image becomes all zeros)."""
    low, high = float(pixels.min()), float(pixels.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.round((pixels - low) * scale).astype(np.uint8)


def min_max(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to [0, 1] over their own range, float32 (a constant map gives zeros)."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def clahe(image: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a uint8 image (OpenCV)."""
    return cv2.createCLAHE(clip_limit, (tiles, tiles)).apply(image)
