"""Small builders the tests share (imported by test modules and conftest)."""

from __future__ import annotations


def small_cnn(classes: int, size: int):
    """A 3-layer CNN whose last convolution is named ``target`` (the Grad-CAM layer)."""
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input((size, size, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(image)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="target")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, keras.layers.Dense(classes, name="logits")(x))
