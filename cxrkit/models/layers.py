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
