"""The UNet family of the MLMI 2024 study: Res-SE-UNet, its dual-encoder form, UNet and MT-UNet.

:func:`build_unet` builds them all from one layout (docs/study.md, 2024 §4.2): an encoder
of five blocks (``filters``, default 64/128/256/512/1024) with four 2x2 max-pools; a decoder of
four transposed-conv upsamplings, each joined with the encoder's skip at that scale and
followed by a block; a head conv3x3-BN-ReLU then a 1x1 conv to one channel, and a spatial
softmax, so the ``saliency`` output sums to 1 over each image.

- ``block="res_se"`` — residual blocks with squeeze-and-excitation (reduction 16): the
  Res-SE-UNet. ``block="double_conv"`` — two conv-BN-ReLU: the standard UNet ("UNet S").
- ``dual_channels=1920`` — the dual encoder: a second input ``block4`` (the frozen DenseNet201
  dense-block-4 features at stride 32) is up-convolved to ``filters[3]`` channels and joined
  with the UNet's deepest features (stride 16) at the start of the decoder.
- ``num_classes=N`` — MT-UNet (Zhu et al. 2022): a classification head (global pooling of
  the bottleneck, N logits) beside the saliency output; :class:`MultiTaskUNet` balances the two
  losses with learnable uncertainty weights.

The model also returns ``decoder_features``: the last decoder block's output (``filters[0]``
channels at full resolution), which the stage-3 fusion classifier pools.
"""

from __future__ import annotations

import keras
from keras import ops

from cxrkit.models.layers import SpatialSoftmax

FILTERS = (64, 128, 256, 512, 1024)  # the study's widths, level 1 to the bottleneck


def _conv_bn(x, filters, kernel, name, relu=True):
    x = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False,
                            name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def squeeze_excite(x, reduction: int, name: str):
    """Channel attention of Hu et al. 2018: pool, Dense C/r + ReLU, Dense C + sigmoid, rescale."""
    channels = x.shape[-1]
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = keras.layers.Dense(max(channels // reduction, 1), activation="relu",
                           name=f"{name}_reduce")(s)
    s = keras.layers.Dense(channels, activation="sigmoid", name=f"{name}_expand")(s)
    return keras.layers.Multiply(name=f"{name}_scale")([x, s])


def res_se_block(x, filters: int, name: str, reduction: int = 16):
    """conv-BN-ReLU, conv-BN, squeeze-excite, + shortcut (1x1 conv-BN when widths differ), ReLU."""
    y = _conv_bn(x, filters, 3, f"{name}_1")
    y = _conv_bn(y, filters, 3, f"{name}_2", relu=False)
    y = squeeze_excite(y, reduction, f"{name}_se")
    shortcut = x if x.shape[-1] == filters else _conv_bn(x, filters, 1, f"{name}_short",
                                                         relu=False)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def double_conv_block(x, filters: int, name: str):
    """The standard UNet block: two conv3x3-BN-ReLU."""
    return _conv_bn(_conv_bn(x, filters, 3, f"{name}_1"), filters, 3, f"{name}_2")


BLOCKS = {"res_se": res_se_block, "double_conv": double_conv_block}


def build_unet(input_shape=(640, 512, 1), *, filters=FILTERS,
               block: str = "res_se", dual_channels: int | None = None,
               num_classes: int | None = None, name: str = "unet") -> keras.Model:
    """Builds a member of the family (see the module docstring).

    Inputs: ``image`` (rows, cols, 1), rows and cols multiples of 16 (32 with the dual
    encoder), and ``block4`` (rows/32, cols/32, ``dual_channels``) when ``dual_channels`` is set.
    Outputs: a dict with ``saliency`` (rows, cols, 1), summing to 1 per image, and
    ``decoder_features``; plus ``logits`` when ``num_classes`` is set.
    """
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {sorted(BLOCKS)}, not {block!r}")
    if len(filters) != 5:
        raise ValueError(f"filters needs five widths (four pools), got {filters}")
    make = BLOCKS[block]
    image = keras.Input(tuple(input_shape[:2]) + (1,), name="image")
    inputs = {"image": image}
    skips, x = [], image
    for level, width in enumerate(filters[:-1]):
        x = make(x, width, f"enc{level + 1}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{level + 1}")(x)
    x = make(x, filters[-1], "bottleneck")
    outputs = {}
    if num_classes is not None:
        pooled = keras.layers.GlobalAveragePooling2D(name="class_pool")(x)
        outputs["logits"] = keras.layers.Dense(num_classes, name="logits")(pooled)
    if dual_channels is not None:
        block4 = keras.Input((input_shape[0] // 32, input_shape[1] // 32, dual_channels),
                             name="block4")
        inputs["block4"] = block4
        dense = keras.layers.Conv2DTranspose(filters[3], 2, strides=2,
                                             name="dual_up")(block4)
        x = keras.layers.Concatenate(name="dual_concat")([x, dense])
    for level in range(len(skips), 0, -1):
        width = filters[level - 1]
        x = keras.layers.Conv2DTranspose(width, 2, strides=2, name=f"up{level}")(x)
        x = keras.layers.Concatenate(name=f"skip{level}")([x, skips[level - 1]])
        x = make(x, width, f"dec{level}")
    outputs["decoder_features"] = x
    head = _conv_bn(x, filters[0], 3, "head")
    logits = keras.layers.Conv2D(1, 1, name="saliency_logits")(head)
    outputs["saliency"] = SpatialSoftmax(name="saliency")(logits)
    return keras.Model(inputs if len(inputs) > 1 else image, outputs, name=name)


@keras.saving.register_keras_serializable(package="cxrkit")
class MultiTaskUNet(keras.Model):
    """MT-UNet: a UNet with saliency and class outputs trained with uncertainty weighting.

    The loss is ``exp(-s_1) * KL + s_1 + exp(-s_2) * CE + s_2`` (Kendall et al. 2018, as in
    Zhu et al. 2022), with KL and CE the batch means and the log-variances ``s`` learned
    alongside the network; it is one scalar, so gradients do not grow with the batch size.
    Train with ``compile(optimizer)`` (no ``loss``) on targets
    ``{"saliency": gaze map, "label": int}``.

    Args:
        unet: a :func:`build_unet` model built with ``num_classes``.
    """

    def __init__(self, unet: keras.Model, **kwargs):
        self.unet = unet
        image = keras.Input(unet.input_shape[1:], name="image")
        outputs = unet(image)
        super().__init__(inputs=image, outputs={"saliency": outputs["saliency"],
                                                "logits": outputs["logits"]}, **kwargs)
        self.log_vars = self.add_weight(shape=(2,), initializer="zeros", name="log_vars")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The uncertainty-weighted batch-mean loss (see the class docstring)."""
        from cxrkit.losses import saliency_kl

        kl = ops.mean(saliency_kl(y["saliency"], y_pred["saliency"]))
        ce = ops.mean(keras.losses.sparse_categorical_crossentropy(
            y["label"], y_pred["logits"], from_logits=True))
        s = self.log_vars
        return ops.exp(-s[0]) * kl + s[0] + ops.exp(-s[1]) * ce + s[1]

    def get_config(self):
        return {"unet": keras.layers.serialize(self.unet), "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["unet"] = keras.layers.deserialize(config["unet"])
        return cls(**config)
