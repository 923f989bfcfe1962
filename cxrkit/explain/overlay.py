"""Heatmap overlays as uint8 RGB arrays (the per-image files of ``cxrkit explain`` and
``cxrkit predict``, the report gallery's tiles); :func:`save_png` writes one. The reports'
figures are drawn with matplotlib (:mod:`cxrkit.figures`).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from cxrkit.preprocessing.intensity import to_uint8

COLORMAPS = {"jet": cv2.COLORMAP_JET, "turbo": cv2.COLORMAP_TURBO,
             "inferno": cv2.COLORMAP_INFERNO, "viridis": cv2.COLORMAP_VIRIDIS,
             "hot": cv2.COLORMAP_HOT}


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """Any (H, W) or (H, W, 1) image, min-max scaled to uint8."""
    return to_uint8(np.asarray(image, np.float32).squeeze())


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A [0, 1] (H, W) map through ``colormap``, as uint8 RGB."""
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; choose from {', '.join(COLORMAPS)}")
    heat = np.round(np.clip(np.asarray(heatmap, np.float32).squeeze(), 0, 1) * 255)
    return cv2.cvtColor(cv2.applyColorMap(heat.astype(np.uint8), COLORMAPS[colormap]),
                        cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.4,
            colormap: str = "jet") -> np.ndarray:
    """``(1 - alpha) * gray image + alpha * coloured heatmap`` as uint8 RGB (H, W, 3).

    The heatmap (values in [0, 1]) is resized bilinearly to the image when sizes differ.
    """
    gray = to_gray_uint8(image)
    heat = np.asarray(heatmap, np.float32).squeeze()
    if heat.shape != gray.shape:
        heat = cv2.resize(heat, gray.shape[::-1], interpolation=cv2.INTER_LINEAR)
    rgb = np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)
    blended = (1.0 - alpha) * rgb + alpha * colorize(heat, colormap).astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def outline(rgb: np.ndarray, mask: np.ndarray, color=(0, 255, 0), thickness: int = 1):
    """Draws the contour of a binary mask on a copy of ``rgb``."""
    binary = (np.asarray(mask).squeeze() > 0.5).astype(np.uint8)
    if binary.shape != rgb.shape[:2]:
        binary = cv2.resize(binary, rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = rgb.copy()
    cv2.drawContours(out, contours, -1, color, thickness)
    return out


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Writes a uint8 RGB (or gray) array as PNG."""
    image = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(os.fspath(path), image):
        raise OSError(f"could not write {path}")
