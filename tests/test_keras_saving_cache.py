"""The skip-set cache of Keras' saving (cxrkit/models/keras_saving_cache.py)."""

from __future__ import annotations

import zipfile

import keras
import numpy as np

from cxrkit.models.keras_saving_cache import KINDS, cache_attribute_skipsets


def _model() -> keras.Model:
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(2, 1)(inputs)
    return keras.Model(inputs, keras.layers.BatchNormalization()(x))


def _layers_built_while(action, monkeypatch) -> int:
    """How many ``keras.layers.Layer`` objects ``action()`` constructs."""
    built = []
    original = keras.layers.Layer.__init__

    def counting(self, *args, **kwargs):
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.Layer, "__init__", counting)
    action()
    monkeypatch.undo()
    return len(built)


def test_saving_builds_no_reference_layers_once_the_skip_sets_are_cached(tmp_path,
                                                                          monkeypatch):
    from keras.src.backend.common import global_state

    model = _model()
    for kind in KINDS:  # as after keras.backend.clear_session(), without clearing the rest
        global_state.set_global_attribute(f"saving_attr_skiplist_{kind}", None)
    uncached = _layers_built_while(lambda: model.save(tmp_path / "a.keras"), monkeypatch)
    assert uncached >= len(model.layers)  # Keras' own lookup misses: one per layer saved
    assert cache_attribute_skipsets()
    assert _layers_built_while(lambda: model.save(tmp_path / "b.keras"), monkeypatch) == 0
    # the same file, as far as the model goes: config and weights
    configs = [zipfile.ZipFile(tmp_path / f"{name}.keras").read("config.json")
               for name in ("a", "b")]
    assert configs[0] == configs[1]
    for name in ("a", "b"):
        loaded = keras.saving.load_model(tmp_path / f"{name}.keras")
        for mine, theirs in zip(model.weights, loaded.weights, strict=True):
            np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    other = _model()
    assert _layers_built_while(lambda: other.load_weights(tmp_path / "b.keras"),
                               monkeypatch) == 0
