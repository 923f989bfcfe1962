"""The MLMI 2023 augmentation as Keras preprocessing layers, to run inside the model.

Placed at the start of a model, the augmentation runs on the accelerator with the rest of the
network and only while training (Keras' random layers are the identity at inference), so the
input pipeline only decodes. It augments images alone: use :func:`cxrkit.data.load`'s
``augment=True`` where a mask or heatmap must move with the image.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cxrkit")
class RandomIntensity(keras.layers.Layer):
    """Per-image contrast and brightness shifts relative to the image's standard deviation.

    ``x * (1 + c) + b * std(x)`` with ``c ~ U(-contrast, contrast)`` and
    ``b ~ U(-brightness, brightness)`` drawn per image; the identity when not training. Being
    relative to the standard deviation, it means the same for z-scored and [0, 1] images.
    """

    def __init__(self, brightness: float = 0.1, contrast: float = 0.1, seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.brightness, self.contrast, self.seed = brightness, contrast, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        shape = (ops.shape(images)[0], 1, 1, 1)
        c = keras.random.uniform(shape, -self.contrast, self.contrast, seed=self.generator)
        b = keras.random.uniform(shape, -self.brightness, self.brightness, seed=self.generator)
        std = ops.std(images, axis=(1, 2, 3), keepdims=True)
        return images * (1.0 + c) + b * std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "brightness": self.brightness,
                "contrast": self.contrast, "seed": self.seed}


def augmentation_layers(*, max_degrees: float = 10.0, noise_std: float = 0.05,
                        brightness: float = 0.1, contrast: float = 0.1,
                        seed: int | None = None) -> keras.Sequential:
    """Horizontal flip, rotation within +-``max_degrees``, contrast/brightness, Gaussian noise.

    The same transformations and defaults as :func:`cxrkit.data.reader.augment_batch`, as a
    ``keras.Sequential`` to put first in a model. Noise is absolute (``GaussianNoise``), which
    matches the relative noise of the pipeline version for z-scored images.
    """
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(max_degrees / 360.0, fill_mode="constant", seed=seed),
        RandomIntensity(brightness, contrast, seed=seed),
        keras.layers.GaussianNoise(noise_std, seed=seed),
    ], name="augmentation")
