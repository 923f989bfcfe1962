"""A small CNN trained for a few epochs beats chance on both phantom sets.

Later end-to-end tests (recipes, Grad-CAM on a trained model) rely on this: a phantom whose
finding no network can see would make them meaningless.
"""

import os

import cv2
import numpy as np
import pytest

from cxrkit.preprocessing import read_dicom
from data_prep.phantom.egd_cxr import generate_egd_cxr

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")


def _zscore(images):
    images = np.stack(images).astype(np.float32)
    mean = images.mean(axis=(1, 2), keepdims=True)
    return ((images - mean) / images.std(axis=(1, 2), keepdims=True))[..., None]


def _held_out_accuracy(images, labels, classes, train):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(images.shape[1:]),
        keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(classes, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(images[:train], labels[:train], epochs=30, batch_size=16, verbose=0)
    return model.evaluate(images[train:], labels[train:], verbose=0)[1]


def test_pneumothorax_is_learnable(trained_siim_cnn):
    model, images, labels, _ = trained_siim_cnn
    assert model.evaluate(images[80:], labels[80:], verbose=0)[1] >= 0.75  # chance: 0.5


def test_egd_diagnosis_is_learnable(tmp_path):
    items = generate_egd_cxr(tmp_path, n=120, size=96, seed=1)
    images = _zscore([cv2.resize(read_dicom(item.path), (64, 64), interpolation=cv2.INTER_AREA)
                      for item in items])
    labels = np.array([("Normal", "CHF", "pneumonia").index(item.diagnosis) for item in items])
    assert _held_out_accuracy(images, labels, 3, train=80) >= 0.5  # chance: 0.33
