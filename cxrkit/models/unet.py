"""The UNet family of the MLMI 2024 study: the dual-encoder Res-SE-UNet, UNet, Res-SE-UNet
and MT-UNet, built as the authors' code builds them (``Module/hzhu_MTL_UNet.py``,
``baseline/hzhu_MTL_UNet.py`` of HealthX-Lab/CXRGazeLearn; docs/models.md gives the parameter
counts, which match theirs).

Blocks:

- ``res_se``: conv3x3-BN-ReLU-conv3x3-BN plus a 3x3-conv shortcut (with bias, always), add,
  ReLU, then squeeze-and-excitation (reduction 16, no biases) on the sum. With fewer than 16
  channels the SE hidden layer has 0 units in their code, so its gate is the constant
  sigmoid(0) = 1/2: cxrkit does the same (a fixed x 1/2, no weights) so that demo widths match
  too.
- ``double_conv``: two conv3x3-BN-ReLU (convolutions keep their biases, as in the code).
- upsampling: nearest x2, then conv3x3-BN-ReLU; skips are joined as (encoder, upsampled).

Encoder: five blocks (``filters``, default 64/128/256/512/1024), 2x2 max-pool before each
but the first (e1 at stride 1 ... e5 at stride 16). The thesis modifies only the encoder
blocks (``encoder_block="res_se"``); the decoder blocks are plain unless ``decoder_block``
says otherwise.

- ``dual_channels=1920`` — the dual encoder (stage 2): the frozen DenseNet201 dense-block-4
  map (input ``block4``, stride 32) stands in for the bottleneck: upsampled to ``filters[3]``
  and joined with e5 at stride 16, then four more levels join e4 ... e1; the last decoder
  output (``filters[0]`` at full resolution) feeds the saliency head.
- without it — the single-encoder UNet of the baselines: upsampling starts from e5 and four
  levels join e4 ... e1.
- ``num_classes=N`` — MT-UNet (Zhu et al. 2022, the authors' ``baseline/``): a class head on
  GAP(e5) and GAP(last decoder output): Dense ``filters[0]`` - dropout 0.25 - ReLU - Dense N.

Head: conv3x3-BN-ReLU then a 1x1 conv to one channel, and a spatial softmax, so the
``saliency`` output sums to 1 over each image. The model also returns ``decoder_features``
(the last decoder output), which the stage-3 fusion classifier pools. BatchNorm uses
PyTorch's defaults (momentum 0.1, i.e. Keras momentum 0.9; epsilon 1e-5).
"""

from __future__ import annotations

import keras
from keras import ops

from cxrkit.models.layers import SpatialSoftmax

FILTERS = (64, 128, 256, 512, 1024)  # the study's widths, level 1 to the bottleneck
SE_REDUCTION = 16


def _bn(x, name):
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)


def _conv_bn(x, filters, kernel, name, relu=True):
    x = keras.layers.Conv2D(filters, kernel, padding="same", name=f"{name}_conv")(x)
    x = _bn(x, f"{name}_bn")
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


@keras.saving.register_keras_serializable(package="cxrkit")
class ConstantGate(keras.layers.Layer):
    """Multiplies by a fixed factor: the squeeze-excite gate of a block whose hidden layer has
    no units (sigmoid(0) = 1/2 for every channel)."""

    def __init__(self, factor: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * ops.cast(self.factor, x.dtype)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def squeeze_excite(x, name: str, reduction: int = SE_REDUCTION):
    """Channel attention of Hu et al. 2018 as the authors' ``SEBlock``: pool, Dense C // r
    (no bias) + ReLU, Dense C (no bias) + sigmoid, rescale."""
    channels = x.shape[-1]
    hidden = channels // reduction
    if hidden == 0:
        return ConstantGate(0.5, name=f"{name}_gate")(x)
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = keras.layers.Dense(hidden, activation="relu", use_bias=False, name=f"{name}_reduce")(s)
    s = keras.layers.Dense(channels, activation="sigmoid", use_bias=False,
                           name=f"{name}_expand")(s)
    return keras.layers.Multiply(name=f"{name}_scale")([x, s])


def res_se_block(x, filters: int, name: str):
    """The authors' ``conv_block``: ResidualBlock (3x3-conv shortcut) then SEBlock."""
    y = _conv_bn(x, filters, 3, f"{name}_1")
    y = _conv_bn(y, filters, 3, f"{name}_2", relu=False)
    shortcut = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_short")(x)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    y = keras.layers.ReLU(name=f"{name}_out")(y)
    return squeeze_excite(y, f"{name}_se")


def double_conv_block(x, filters: int, name: str):
    """The standard UNet block: two conv3x3-BN-ReLU."""
    return _conv_bn(_conv_bn(x, filters, 3, f"{name}_1"), filters, 3, f"{name}_2")


def up_conv(x, filters: int, name: str):
    """Nearest-neighbour x2 upsampling, then conv3x3-BN-ReLU (the authors' ``up_conv``)."""
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_upsample")(x)
    return _conv_bn(x, filters, 3, name)


BLOCKS = {"res_se": res_se_block, "double_conv": double_conv_block}


def build_unet(input_shape=(640, 512, 1), *, filters=FILTERS, block: str = "res_se",
               decoder_block: str = "double_conv", dual_channels: int | None = None,
               num_classes: int | None = None, name: str = "unet") -> keras.Model:
    """Builds a member of the family (see the module docstring); ``block`` is the encoder's.

    Inputs: ``image`` (rows, cols, 1), rows and cols multiples of 16 (32 with the dual
    encoder), and ``block4`` (rows/32, cols/32, ``dual_channels``) when ``dual_channels`` is set.
    Outputs: a dict with ``saliency`` (rows, cols, 1), summing to 1 per image, and
    ``decoder_features``; plus ``logits`` when ``num_classes`` is set.
    """
    for role, kind in (("block", block), ("decoder_block", decoder_block)):
        if kind not in BLOCKS:
            raise ValueError(f"{role} must be one of {sorted(BLOCKS)}, not {kind!r}")
    if len(filters) != 5:
        raise ValueError(f"filters needs five widths (four pools), got {filters}")
    encode, decode = BLOCKS[block], BLOCKS[decoder_block]
    image = keras.Input(tuple(input_shape[:2]) + (1,), name="image")
    inputs = {"image": image}
    skips, x = [], image
    for level, width in enumerate(filters):
        if level:
            x = keras.layers.MaxPooling2D(2, name=f"pool{level}")(x)
        x = encode(x, width, f"enc{level + 1}")
        skips.append(x)
    deepest = skips[-1]
    if dual_channels is not None:  # the DenseNet map replaces the bottleneck: five levels
        block4 = keras.Input((input_shape[0] // 32, input_shape[1] // 32, dual_channels),
                             name="block4")
        inputs["block4"] = block4
        x, widths = block4, [filters[3], filters[2], filters[1], filters[0], filters[0]]
        joined = skips[::-1]  # e5, e4, e3, e2, e1
    else:  # upsampling starts from e5: four levels
        x, widths, joined = deepest, list(filters[3::-1]), skips[-2::-1]
    for level, (width, skip) in zip(range(len(widths), 0, -1), zip(widths, joined,
                                                                  strict=True), strict=True):
        x = up_conv(x, width, f"up{level}")
        x = keras.layers.Concatenate(name=f"skip{level}")([skip, x])
        x = decode(x, width, f"dec{level}")
    outputs = {"decoder_features": x}
    if num_classes is not None:
        pooled = keras.layers.Concatenate(name="class_pool")([
            keras.layers.GlobalAveragePooling2D(name="pool_bottleneck")(deepest),
            keras.layers.GlobalAveragePooling2D(name="pool_decoder")(x)])
        hidden = keras.layers.Dense(filters[0], name="class_hidden")(pooled)
        hidden = keras.layers.Dropout(0.25, name="class_dropout")(hidden)
        hidden = keras.layers.ReLU(name="class_relu")(hidden)
        outputs["logits"] = keras.layers.Dense(num_classes, name="logits")(hidden)
    head = _conv_bn(x, filters[0], 3, "head")
    logits = keras.layers.Conv2D(1, 1, name="saliency_logits")(head)
    outputs["saliency"] = SpatialSoftmax(name="saliency")(logits)
    return keras.Model(inputs if len(inputs) > 1 else image, outputs, name=name)


@keras.saving.register_keras_serializable(package="cxrkit")
class MultiTaskUNet(keras.Model):
    """MT-UNet: a UNet with saliency and class outputs, trained with Zhu et al.'s uncertainty
    weighting as the authors' ``baseline/`` code runs it.

    The loss is ``CE / sigma_c^2 + log(sigma_c + 1) + KL / (2 sigma_i^2) + log(sigma_i + 1)``
    with ``sigma = exp(s)``: ``s_c`` is learned (it starts at 0), ``s_i`` stays 0 (their RUN.py
    passes none), so the saliency term is ``KL / 2 + log 2``. KL and CE are batch means, so the
    loss is one scalar whose gradients do not grow with the batch size. Train with
    ``compile(optimizer)`` (no ``loss``) on targets ``{"saliency": gaze map, "label": int}``.

    Args:
        unet: a :func:`build_unet` model built with ``num_classes``.
    """

    def __init__(self, unet: keras.Model, **kwargs):
        self.unet = unet
        image = keras.Input(unet.input_shape[1:], name="image")
        outputs = unet(image)
        super().__init__(inputs=image, outputs={"saliency": outputs["saliency"],
                                                "logits": outputs["logits"]}, **kwargs)
        self.log_sigma_class = self.add_weight(shape=(), initializer="zeros",
                                               name="log_sigma_class")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The uncertainty-weighted batch-mean loss (see the class docstring)."""
        from cxrkit.losses import saliency_kl

        kl = ops.mean(saliency_kl(y["saliency"], y_pred["saliency"]))
        ce = ops.mean(keras.losses.sparse_categorical_crossentropy(
            y["label"], y_pred["logits"], from_logits=True))
        sigma = ops.exp(self.log_sigma_class)
        return ce / ops.square(sigma) + ops.log(sigma + 1.0) + kl / 2.0 + ops.log(2.0)

    def get_config(self):
        return {"unet": keras.layers.serialize(self.unet), "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["unet"] = keras.layers.deserialize(config["unet"])
        return cls(**config)
