"""The MLMI 2024 stage-1 network: a DenseNet201 encoder with two taps, and its head.

One functional model ``densenet`` maps a grayscale image (rows, cols, 1) — repeated to three
channels inside — to a dict of two feature maps, both at stride 32:

- ``block4``: the output of dense block 4 (``stack4_block32_concat``, 1920 channels, before
  the final BN), which feeds the dual-encoder UNet's decoder and, globally pooled, is the
  triplet-loss embedding of stage 1;
- ``features``: the final normalised features (after ``bn`` and ``relu``), which the
  classifier heads and Grad-CAM use.

``blocks`` builds a DenseNet of other depths (dense layers per block; DenseNet201 is
6/12/48/32) with random weights — small ones make fast tests of the whole pipeline. The parts
that consume the taps read their width from the built encoder.
"""

from __future__ import annotations

import keras

from cxrkit.errors import CxrkitError
from cxrkit.models.backbones import build_backbone, get_spec
from cxrkit.models.layers import GrayscaleToRGB

FEATURES = 1920  # DenseNet201: channels of block4 and of the final features


def build_densenet_encoder(input_shape=(640, 512, 1), *, weights=None, blocks=None,
                           name: str = "densenet") -> keras.Model:
    """DenseNet201 from the registry (or a DenseNet of ``blocks`` dense layers per block),
    returning ``{"block4", "features"}`` (see the module docstring)."""
    size = tuple(input_shape[:2])
    if blocks is None:
        backbone = build_backbone("densenet201", image_size=size, weights=weights)
        blocks = get_spec("densenet201").config["stackwise_num_repeats"]
    else:
        import keras_hub

        if weights is not None or len(blocks) != 4:
            raise CxrkitError(f"a DenseNet of blocks {list(blocks)}: give four block sizes and "
                              "no weights (pretrained weights exist for DenseNet201 only)")
        backbone = keras_hub.models.DenseNetBackbone(stackwise_num_repeats=list(blocks),
                                                     image_shape=(*size, 3))
    block4 = backbone.get_layer(f"stack4_block{blocks[-1]}_concat").output
    taps = keras.Model(backbone.inputs, [block4, backbone.output], name="densenet201")
    image = keras.Input(tuple(input_shape[:2]) + (1,), name="image")
    block4, features = taps(GrayscaleToRGB(name="grayscale_to_rgb")(image))
    return keras.Model(image, {"block4": block4, "features": features}, name=name)


def build_dense_head(num_classes: int = 3, *, channels: int = FEATURES, dropout: float = 0.0,
                     name: str = "densenet_head") -> keras.Model:
    """Global average pooling of the ``features`` map, dropout and ``num_classes`` logits."""
    features = keras.Input((None, None, channels), name="features")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(features, keras.layers.Dense(num_classes, name="logits")(x), name=name)
