"""The MLMI 2024 stage-1 network: a DenseNet201 encoder with two taps, and its head.

One functional model ``densenet`` maps a grayscale image (rows, cols, 1) — repeated to three
channels inside — to a dict of two feature maps, both at stride 32:

- ``block4``: the output of dense block 4 (``stack4_block32_concat``, 1920 channels, before
  the final BN), which feeds the dual-encoder UNet's decoder and, globally pooled, is the
  triplet-loss embedding of stage 1;
- ``features``: the final normalised features (after ``bn`` and ``relu``), which the
  classifier heads and Grad-CAM use.

``blocks`` builds a DenseNet of other depths (dense layers per block; DenseNet201 is
6/12/48/32) and ``growth_rate`` one of another width (channels each dense layer adds;
DenseNet201's is 32, the DenseNet paper also trains 12 and 24), both with random weights —
small ones make fast tests of the whole pipeline, a narrower DenseNet201 a fast demo. The
parts that consume the taps read their width from the built encoder.
"""

from __future__ import annotations

import keras

from cxrkit.errors import CxrkitError
from cxrkit.models.backbones import build_backbone, get_spec
from cxrkit.models.layers import GrayscaleToRGB

FEATURES = 1920  # DenseNet201: channels of block4 and of the final features


def build_densenet_encoder(input_shape=(640, 512, 1), *, weights=None, blocks=None,
                           growth_rate: int | None = None,
                           name: str = "densenet") -> keras.Model:
    """DenseNet201 from the registry (or a DenseNet of ``blocks`` dense layers per block
    and ``growth_rate``), returning ``{"block4", "features"}`` (see the module docstring)."""
    size = tuple(input_shape[:2])
    if blocks is None and growth_rate in (None, 32):  # DenseNet201 itself
        backbone = build_backbone("densenet201", image_size=size, weights=weights)
        blocks = get_spec("densenet201").config["stackwise_num_repeats"]
    else:
        import keras_hub

        blocks = list(blocks or get_spec("densenet201").config["stackwise_num_repeats"])
        growth_rate = 32 if growth_rate is None else int(growth_rate)
        if len(blocks) != 4 or growth_rate < 1:
            raise CxrkitError(f"a DenseNet of blocks {blocks} and growth rate {growth_rate}: "
                              "give four block sizes and a positive growth rate")
        if weights is not None:
            raise CxrkitError(f"weights {weights}: pretrained weights exist for DenseNet201 "
                              f"(blocks 6/12/48/32, growth rate 32) only, not for blocks "
                              f"{blocks} at growth rate {growth_rate} (in a recipe: "
                              "--set parts.densenet.growth_rate=32)")
        backbone = keras_hub.models.DenseNetBackbone(stackwise_num_repeats=blocks,
                                                     growth_rate=growth_rate,
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
