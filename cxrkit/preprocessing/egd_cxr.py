"""``egd-cxr``: the MLMI 2024 convention (EGD-CXR eye-gaze; docs/study.md, 2024 §4.3.4).

The thesis: images "padded and resampled to the resolution of 640 x 512", intensities in
[0, 1] per image. Two placements (:class:`Geometry`) do that:

- ``"centre"`` (the default; the authors' ``Data/hzhu_data_raw.py``): the image is centred,
  unscaled, on a fixed canvas of ``canvas`` native pixels (3200 x 2560 for the study's
  ~3,000 x 2,500 images; offsets truncated toward zero as their ``int((W - w) / 2)``), what
  overflows the canvas is cropped (their landscape transpose is a no-op, so wide images lose
  their sides), and the canvas is resampled to ``size``. Their code keeps every fifth (or
  tenth) pixel; cxrkit area-averages (``INTER_AREA``), the anti-aliased form of the same
  mapping.
- ``"fit"``: the image is scaled to fit ``size`` and zero-padded at the bottom / right, so
  every image fills the grid whatever its native size (cxrkit's earlier default).

The gaze heatmaps the EGD-CXR converter makes use the same geometry, so a fixation on a
structure lands on that structure in both. Stored image: the resampled image min-max scaled
to [0, 1] over the pixels it covers, zero elsewhere, times 255 (uint8). Stored target: the gaze
heatmap in [0, 1] times 65535 (uint16). Model input: the stored image / 255.

:meth:`EgdCxrPreprocessing.from_bytes` repeats the whole path with TensorFlow ops for the
``predict_image_bytes`` serving signature (:mod:`cxrkit.preprocessing.in_graph`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from cxrkit.preprocessing.base import Preprocessing, register
from cxrkit.preprocessing.intensity import min_max

PLACEMENTS = ("centre", "fit")
STUDY_CANVAS = (3200, 2560)  # rows, cols of the authors' fixed canvas, native pixels


def centre_offset(canvas: int, length: int) -> int:
    """Native pixels of padding before the image (negative: cropped), as the authors' code:
    ``int((canvas - length) / 2)``, truncated toward zero."""
    return int((canvas - length) / 2)


@dataclass(frozen=True)
class Geometry:
    """Where an original ``shape`` (rows, cols) image lands on the ``target`` grid.

    A native pixel centre ``(r, c)`` maps to target position ``origin + (r, c) * scale``
    (per axis), in target-pixel units.
    """

    shape: tuple[int, int]
    target: tuple[int, int]
    placement: str = "centre"
    canvas: tuple[int, int] = STUDY_CANVAS

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, "
                             f"got {self.placement!r}")

    @property
    def scale(self) -> tuple[float, float]:
        """Target pixels per native pixel, (rows, cols)."""
        if self.placement == "fit":
            s = min(self.target[0] / self.shape[0], self.target[1] / self.shape[1])
            return s, s
        return self.target[0] / self.canvas[0], self.target[1] / self.canvas[1]

    @property
    def offset(self) -> tuple[int, int]:
        """Native pixels of canvas before the image, (top, left); negative where cropped."""
        if self.placement == "fit":
            return 0, 0
        return (centre_offset(self.canvas[0], self.shape[0]),
                centre_offset(self.canvas[1], self.shape[1]))

    @property
    def origin(self) -> tuple[float, float]:
        """Target-grid position of the image's top-left corner (may be negative)."""
        return tuple(o * s for o, s in zip(self.offset, self.scale, strict=True))

    @property
    def footprint(self) -> tuple[int, int]:
        """Rows and columns the whole image spans on the target grid (``fit``: the region it
        is resized to)."""
        if self.placement == "fit":
            return tuple(min(t, max(1, round(n * s)))
                         for t, n, s in zip(self.target, self.shape, self.scale, strict=True))
        return tuple(max(1, math.ceil(o % 1 + n * s - 1e-9))
                     for o, n, s in zip(self.origin, self.shape, self.scale, strict=True))

    @property
    def covered(self) -> tuple[slice, slice]:
        """The target pixels the image covers, wholly or in part (the rest is padding)."""
        out = []
        for o, f, t in zip(self.origin, self.footprint, self.target, strict=True):
            start = math.floor(o)
            out.append(slice(max(0, start), max(0, min(t, start + f))))
        return tuple(out)

    def paste(self, footprint_map: np.ndarray) -> np.ndarray:
        """A footprint-sized map (anchored at ``floor(origin)``) on the zero target canvas,
        what falls outside the target cropped; float32."""
        canvas = np.zeros(self.target, np.float32)
        rows, cols = self.covered
        top, left = (math.floor(o) for o in self.origin)
        canvas[rows, cols] = footprint_map[rows.start - top: rows.stop - top,
                                           cols.start - left: cols.stop - left]
        return canvas

    def resample(self, native: np.ndarray) -> np.ndarray:
        """A native-grid map on the target grid with area averaging, zero where the image is
        not (``fit``: resize to the footprint; ``centre``: place on the canvas, crop, then
        resize the canvas), float32."""
        native = native.astype(np.float32)
        if self.placement == "fit":
            rows, cols = self.footprint
            return self.paste(cv2.resize(native, (cols, rows), interpolation=cv2.INTER_AREA))
        canvas = np.zeros(self.canvas, np.float32)
        (top, left), (rows, cols) = self.offset, self.shape
        r0, c0 = max(0, top), max(0, left)
        r1, c1 = min(self.canvas[0], top + rows), min(self.canvas[1], left + cols)
        if r1 > r0 and c1 > c0:
            canvas[r0:r1, c0:c1] = native[r0 - top: r1 - top, c0 - left: c1 - left]
        return cv2.resize(canvas, self.target[::-1], interpolation=cv2.INTER_AREA)


@register
class EgdCxrPreprocessing(Preprocessing):
    """Pad-and-resample to ``size``, min-max to [0, 1], 8 bits in the records, / 255 to read.

    Args:
        size: (rows, cols) (the study: 640 x 512).
        placement: ``"centre"`` (the authors' code) or ``"fit"`` (see the module docstring).
        canvas: (rows, cols) of the ``centre`` placement's canvas in native pixels (the
            study's 3200 x 2560; scale it with the images, e.g. for small phantoms).
    """

    name = "egd-cxr"
    target = "heatmap"
    target_dtype = "uint16"
    id_features = ("image_id", "patient_id")

    def __init__(self, size=(640, 512), placement: str = "centre", canvas=STUDY_CANVAS):
        super().__init__(size)
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, "
                             f"got {placement!r}")
        rows, cols = (int(canvas[0]), int(canvas[1]))
        if rows < 1 or cols < 1:
            raise ValueError(f"canvas must be positive, got {canvas!r}")
        self.placement, self.canvas = placement, (rows, cols)

    def geometry(self, shape: tuple[int, int]) -> Geometry:
        """The mapping of an original ``shape`` onto this convention's grid."""
        return Geometry(tuple(int(n) for n in shape), self.size, self.placement, self.canvas)

    def resample(self, pixels: np.ndarray) -> np.ndarray:
        """Raw pixels on the target grid, float32 in [0, 1] (before 8-bit quantisation):
        resampled from ``pixels - min``, min-max over the covered pixels, zero elsewhere."""
        geometry = self.geometry(pixels.shape)
        placed = geometry.resample(pixels.astype(np.float32) - float(pixels.min()))
        out = np.zeros_like(placed)
        rows, cols = geometry.covered
        out[rows, cols] = min_max(placed[rows, cols])
        return out

    def record_image(self, pixels: np.ndarray) -> np.ndarray:
        return np.round(self.resample(pixels) * 255).astype(np.uint8)

    def normalise(self, image):
        return image / 255.0

    def from_bytes(self, encoded):
        from cxrkit.preprocessing.in_graph import egd_from_bytes

        return egd_from_bytes(encoded, self.size, self.placement, self.canvas)

    def get_config(self) -> dict:
        return {**super().get_config(), "placement": self.placement,
                "canvas": list(self.canvas)}
