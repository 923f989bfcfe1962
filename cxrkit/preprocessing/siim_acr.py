"""``siim-acr``: the MLMI 2023 convention (SIIM-ACR pneumothorax; docs/study.md, 2023 §3.2).

Stored image: the raw pixels scaled to 8 bits over their own range, equalised with CLAHE (clip
limit 2, 8x8 tiles) at native resolution, area-resized to ``size``. Stored target: the
pneumothorax mask, nearest-neighbour resized, 0 or 255. Model input: the stored image's
per-image z-score (mean 0, standard deviation 1; a flat image's deviation is floored at 1e-6).

CLAHE has no TensorFlow op, so there is no in-graph bytes path: serving clients send
preprocessed images to ``serving_default`` (``cxrkit predict`` does this for them).
"""

from __future__ import annotations

import cv2
import numpy as np

from cxrkit.preprocessing.base import Preprocessing, register
from cxrkit.preprocessing.intensity import clahe, to_uint8


@register
class SiimAcrPreprocessing(Preprocessing):
    """CLAHE + area resize in the records, per-image z-score in the reader.

    Args:
        size: (rows, cols) or an int side (the study: 224).
        clip_limit, tiles: CLAHE parameters (the study: 2.0 and 8x8).
    """

    name = "siim-acr"
    target = "mask"
    target_dtype = "uint8"

    def __init__(self, size=224, clip_limit: float = 2.0, tiles: int = 8):
        super().__init__(size)
        self.clip_limit, self.tiles = float(clip_limit), int(tiles)

    def record_image(self, pixels: np.ndarray) -> np.ndarray:
        rows, cols = self.size
        equalised = clahe(to_uint8(pixels), self.clip_limit, self.tiles)
        return cv2.resize(equalised, (cols, rows), interpolation=cv2.INTER_AREA)

    def record_mask(self, mask: np.ndarray) -> np.ndarray:
        """A native-resolution 0/1 mask as the stored uint8 mask (0 or 255, nearest)."""
        rows, cols = self.size
        return cv2.resize(np.asarray(mask).astype(np.uint8) * 255, (cols, rows),
                          interpolation=cv2.INTER_NEAREST)

    def normalise(self, image):
        import tensorflow as tf

        mean, variance = tf.nn.moments(image, axes=[0, 1, 2])
        return (image - mean) / tf.maximum(tf.sqrt(variance), 1e-6)

    def get_config(self) -> dict:
        return {**super().get_config(), "clip_limit": self.clip_limit, "tiles": self.tiles}
