"""Small layers the cxrkit models share; each registered so ``.keras`` files load in safe mode."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cxrkit")
class GrayscaleToRGB(keras.layers.Layer):
    """Repeats a 1-channel image to the 3 channels ImageNet backbones expect (a no-op for 3)."""

    def call(self, images):
        if images.shape[-1] == 3:
            return images
        return ops.repeat(images, 3, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)


@keras.saving.register_keras_serializable(package="cxrkit")
class SpatialSoftmax(keras.layers.Layer):
    """Softmax over all pixels of a one-channel map: (B, H, W, 1) logits to maps that sum to 1.

    This is the 2024 study's saliency output (its code applies a log-softmax over the flattened
    map and compares with the gaze map divided by its sum).
    """

    def call(self, logits):
        shape = ops.shape(logits)
        flat = ops.reshape(logits, (shape[0], -1))
        return ops.reshape(ops.softmax(flat, axis=-1), shape)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="cxrkit")
class ClassToken(keras.layers.Layer):
    """Takes the class token (index 0) of a ViT token sequence: (B, 1 + N, D) to (B, D)."""

    def call(self, tokens):
        return tokens[:, 0, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@keras.saving.register_keras_serializable(package="cxrkit")
class GroupedPointwiseConv2D(keras.layers.Conv2D):
    """A 1 x 1 ``Conv2D`` with ``groups`` (channels last), computed as one einsum over the
    channel groups.

    Keras' TensorFlow backend runs every grouped convolution through a ``jit_compile``
    function, because TensorFlow's CPU kernels have none. On a CPU that means XLA compiles each
    one, forward and gradient, for every new input shape: a training step, a validation step,
    each eager batch size (GazeGNN's 12 graph convolutions: seconds per stage, and a
    SavedModel that needs XLA to serve). A 1 x 1 grouped convolution is a matrix product per
    group — output channel ``o`` reads input group ``o // (filters / groups)`` — so this layer
    computes it so, from Keras' own kernel ``(1, 1, in / groups, filters)`` and bias:
    the same weights, names and results (``tests/test_models_gazegnn.py`` compares it with
    Keras' grouped ``Conv2D``). Other shapes are refused.
    """

    def __init__(self, filters, kernel_size=1, *, groups: int, **kwargs):
        super().__init__(filters, kernel_size, groups=groups, **kwargs)
        if (tuple(self.kernel_size) != (1, 1) or tuple(self.strides) != (1, 1)
                or tuple(self.dilation_rate) != (1, 1) or self.data_format != "channels_last"):
            raise ValueError("GroupedPointwiseConv2D is a 1 x 1, stride 1, channels-last "
                             "convolution")

    def convolution_op(self, inputs, kernel):
        groups, filters = self.groups, self.filters
        per_group = kernel.shape[2]
        grouped = ops.reshape(inputs, (*ops.shape(inputs)[:-1], groups, per_group))
        weights = ops.transpose(ops.reshape(kernel, (per_group, groups, filters // groups)),
                                (1, 0, 2))
        outputs = ops.einsum("...gi,gio->...go", grouped, weights)
        return ops.reshape(outputs, (*ops.shape(inputs)[:-1], filters))
