"""The MLMI 2024 stage-1 network: a DenseNet201 encoder with two taps, and its head.

One functional model ``densenet`` maps a grayscale image (rows, cols, 1) — repeated to three
channels inside — to a dict of two feature maps, both at stride 32:

- ``block4``: the output of dense block 4 (``stack4_block32_concat``, 1920 channels, before
  the final BN), which feeds the dual-encoder UNet's decoder and, globally pooled, is the
  triplet-loss embedding of stage 1;
- ``features``: the final normalised features (after ``bn`` and ``relu``), which the
  classifier heads and Grad-CAM use.
"""

from __future__ import annotations

import keras

from cxrkit.models.backbones import build_backbone
from cxrkit.models.layers import GrayscaleToRGB

BLOCK4 = "stack4_block32_concat"


def build_densenet_encoder(input_shape=(640, 512, 1), *, weights=None,
                           name: str = "densenet") -> keras.Model:
    """DenseNet201 from the registry, returning ``{"block4", "features"}`` (see module doc)."""
    backbone = build_backbone("densenet201", image_size=tuple(input_shape[:2]), weights=weights)
    taps = keras.Model(backbone.inputs, [backbone.get_layer(BLOCK4).output, backbone.output],
                       name="densenet201")
    image = keras.Input(tuple(input_shape[:2]) + (1,), name="image")
    block4, features = taps(GrayscaleToRGB(name="grayscale_to_rgb")(image))
    return keras.Model(image, {"block4": block4, "features": features}, name=name)


def build_dense_head(num_classes: int = 3, *, channels: int = 1920, dropout: float = 0.0,
                     name: str = "densenet_head") -> keras.Model:
    """Global average pooling of the ``features`` map, dropout and ``num_classes`` logits."""
    features = keras.Input((None, None, channels), name="features")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(features, keras.layers.Dense(num_classes, name="logits")(x), name=name)
