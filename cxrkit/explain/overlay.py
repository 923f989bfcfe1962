"""Heatmap overlays and the model-comparison grid of the MLMI 2023 thesis (Fig. 3.1).

All images come back as uint8 RGB arrays; :func:`save_png` writes one.
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


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    band = np.full((18, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(band, text[: max(tile.shape[1] // 7, 1)], (2, 13), cv2.FONT_HERSHEY_SIMPLEX,
                0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, tile], axis=0)


def grid(rows: list[list[np.ndarray]], *, column_titles: list[str], pad: int = 2):
    """Lays uint8 RGB tiles out in a grid (rows of equal length) under one title per column."""
    if any(len(r) != len(column_titles) for r in rows):
        raise ValueError("every row needs one tile per column title")
    h, w = rows[0][0].shape[:2]

    def place(tile):
        tile = cv2.resize(tile, (w, h)) if tile.shape[:2] != (h, w) else tile
        return np.pad(tile, ((pad, pad), (pad, pad), (0, 0)), constant_values=255)

    lines = [np.concatenate([_label(place(t), title)
                             for t, title in zip(rows[0], column_titles, strict=True)], axis=1)]
    lines += [np.concatenate([place(t) for t in row], axis=1) for row in rows[1:]]
    return np.concatenate(lines, axis=0)


def comparison_grid(images: np.ndarray, heatmaps: dict[str, np.ndarray], *,
                    masks: np.ndarray | None = None, alpha: float = 0.4,
                    colormap: str = "jet", mask_color=(255, 255, 255)) -> np.ndarray:
    """The thesis' Fig. 3.1: rows = images, first column the image, then one column per model.

    Args:
        images: (N, H, W[, 1]) images.
        heatmaps: model name -> (N, H, W) maps in [0, 1].
        masks: optional (N, H, W) ground-truth masks, outlined on every tile in
            ``mask_color`` (white, as the thesis' figure shows the manual segmentation).
    """
    rows = []
    for i, image in enumerate(images):
        gray = to_gray_uint8(image)
        tiles = [np.repeat(gray[..., None], 3, axis=-1)]
        tiles += [overlay(image, maps[i], alpha=alpha, colormap=colormap)
                  for maps in heatmaps.values()]
        if masks is not None:
            tiles = [outline(t, masks[i], color=mask_color) for t in tiles]
        rows.append(tiles)
    return grid(rows, column_titles=["image", *heatmaps])


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Writes a uint8 RGB (or gray) array as PNG."""
    image = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(os.fspath(path), image):
        raise OSError(f"could not write {path}")
