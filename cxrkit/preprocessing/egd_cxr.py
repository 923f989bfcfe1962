"""``egd-cxr``: the MLMI 2024 convention (EGD-CXR eye-gaze; docs/study.md, 2024 §4.2).

Geometry (:class:`Geometry`): an original (rows, cols) image is scaled to fit ``size`` and
zero-padded at the bottom / right (the study pads to 3200 x 2560 and keeps every fifth pixel
to get 640 x 512); the gaze heatmaps the EGD-CXR converter makes use the same mapping,
so a fixation on a structure lands on that structure in both. Stored image: area-resized,
min-max scaled to [0, 1] over the image region, padded, times 255 (uint8). Stored target: the
gaze heatmap in [0, 1] times 65535 (uint16). Model input: the stored image / 255.

:meth:`EgdCxrPreprocessing.from_bytes` repeats the whole path with TensorFlow ops for the
``predict_image_bytes`` serving signature (:mod:`cxrkit.preprocessing.in_graph`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cxrkit.preprocessing.base import Preprocessing, register
from cxrkit.preprocessing.intensity import min_max


@dataclass(frozen=True)
class Geometry:
    """Where an original image lands on the target grid: scale and the covered region."""

    shape: tuple[int, int]
    target: tuple[int, int]

    @property
    def scale(self) -> float:
        rows, cols = self.shape
        return min(self.target[0] / rows, self.target[1] / cols)

    @property
    def region(self) -> tuple[int, int]:
        """Rows and columns of the target grid covered by the image (the rest is padding)."""
        rows, cols = self.shape
        return (min(self.target[0], max(1, round(rows * self.scale))),
                min(self.target[1], max(1, round(cols * self.scale))))

    def place(self, region_map: np.ndarray) -> np.ndarray:
        """A region-sized map on the zero-padded target canvas, float32."""
        canvas = np.zeros(self.target, np.float32)
        canvas[: region_map.shape[0], : region_map.shape[1]] = region_map
        return canvas


@register
class EgdCxrPreprocessing(Preprocessing):
    """Pad-and-resample to ``size``, min-max to [0, 1], 8 bits in the records, / 255 to read.

    Args:
        size: (rows, cols) (the study: 640 x 512).
    """

    name = "egd-cxr"
    target = "heatmap"
    target_dtype = "uint16"
    id_features = ("image_id", "patient_id")

    def __init__(self, size=(640, 512)):
        super().__init__(size)

    def geometry(self, shape: tuple[int, int]) -> Geometry:
        """The mapping of an original ``shape`` onto this convention's grid."""
        return Geometry(tuple(shape), self.size)

    def resample(self, pixels: np.ndarray) -> np.ndarray:
        """Raw pixels on the target grid, float32 in [0, 1] (before 8-bit quantisation)."""
        geometry = self.geometry(pixels.shape)
        rows, cols = geometry.region
        small = cv2.resize(pixels.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
        return geometry.place(min_max(small))

    def record_image(self, pixels: np.ndarray) -> np.ndarray:
        return np.round(self.resample(pixels) * 255).astype(np.uint8)

    def normalise(self, image):
        return image / 255.0

    def from_bytes(self, encoded):
        from cxrkit.preprocessing.in_graph import egd_from_bytes

        return egd_from_bytes(encoded, self.size)
