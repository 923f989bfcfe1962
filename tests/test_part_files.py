"""Saved part files: the faster weight read of cxrkit.recipes.parts.load_part_weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cxrkit.errors import CxrkitError
from cxrkit.models import fuse_batch_norms
from cxrkit.recipes.parts import load_part_weights, save_part


def _part(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(3, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    fuse_batch_norms(model)
    return model


def test_a_part_file_loads_the_weights_keras_loads(tmp_path):
    saved = _part(0)
    saved.layers[2].moving_variance.assign(np.full(3, 2.5, "float32"))  # not just trainables
    save_part(saved, tmp_path / "part.keras")
    ours, keras_own = _part(1), _part(1)
    assert not np.array_equal(np.asarray(ours.weights[0]), np.asarray(saved.weights[0]))
    load_part_weights(ours, tmp_path / "part.keras")
    keras_own.load_weights(tmp_path / "part.keras")
    for mine, theirs, reference in zip(ours.weights, keras_own.weights, saved.weights,
                                       strict=True):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(reference))
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))


@pytest.mark.parametrize("content", [b"not a zip", None])
def test_a_file_that_is_not_a_saved_model_is_named(tmp_path, content):
    path = tmp_path / "broken.keras"
    if content is None:  # a zip without the weights member
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", "{}")
    else:
        path.write_bytes(content)
    with pytest.raises(CxrkitError, match="broken.keras: not a saved Keras model"):
        load_part_weights(_part(0), path)
    with pytest.raises(CxrkitError, match="missing.keras"):
        load_part_weights(_part(0), tmp_path / "missing.keras")
