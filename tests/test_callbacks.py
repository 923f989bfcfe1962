"""The TensorBoard images a saliency stage writes (cxrkit.recipes.callbacks.SaliencyImages)."""

from __future__ import annotations

import keras
import numpy as np
from tensorboard_images import written_images

from cxrkit.recipes.callbacks import SaliencyImages


def test_saliency_images_are_the_predicted_maps_scaled_to_their_peaks(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    saliency = keras.layers.Conv2D(1, 3, padding="same", activation="softplus")(inputs)
    model = keras.Model(inputs, {"saliency": saliency})
    model.compile(keras.optimizers.SGD(0.0), loss={"saliency": "mse"})  # the maps stay put
    rng = np.random.default_rng(0)
    images = rng.random((3, 8, 8, 1), dtype="float32")
    gaze = rng.random((3, 8, 8, 1), dtype="float32")
    model.fit(images, {"saliency": gaze}, epochs=2, verbose=0,
              callbacks=[SaliencyImages(str(tmp_path), images, gaze)])
    expected = np.asarray(model(images)["saliency"])
    expected = np.round(expected / expected.max(axis=(1, 2, 3), keepdims=True) * 255)
    predicted = written_images(tmp_path, "images/saliency")
    assert sorted(predicted) == [0, 1]  # after each epoch
    for maps in predicted.values():
        np.testing.assert_allclose(maps.astype(float), expected, atol=1.0)
    truth = written_images(tmp_path, "images/gaze_truth")
    assert sorted(truth) == [0]  # once
    np.testing.assert_allclose(truth[0].astype(float),
                               np.round(gaze / gaze.max(axis=(1, 2, 3), keepdims=True) * 255),
                               atol=1.0)
