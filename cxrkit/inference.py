"""Trained models on new images: loading a model with its card, and logits to probabilities.

:func:`load_model` returns a Keras model and its :class:`~cxrkit.card.ModelCard`; the card's
preprocessing (``card.preprocessing.prepare(read_image(path))``) turns a raw DICOM, PNG or
JPEG into exactly what the model saw in training.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cxrkit.card import ModelCard, card_path
from cxrkit.errors import CxrkitError, InputError
from cxrkit.preprocessing import from_config


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A ``.keras`` file, or a run directory holding ``model.keras``."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "model.keras"
        if not candidate.is_file():
            raise InputError(path, "run directory has no model.keras")
        return candidate
    if not path.is_file():
        raise InputError(path, "model not found")
    return path


def card_for(model, preprocessing: str, class_names=None) -> ModelCard:
    """A card for a model saved without one: the named preprocessing at the model's input
    size, and the given class names (``class_0`` … by default; a single logit means 2)."""
    output = model.output["logits"] if isinstance(model.output, dict) else model.output
    count = max(int(output.shape[-1]), 2)
    names = tuple(class_names) if class_names else tuple(f"class_{i}" for i in range(count))
    if len(names) != count:
        raise CxrkitError(f"the model has {count} classes but {len(names)} names were given")
    task = "mlmi2024" if isinstance(model.output, dict) and "saliency" in model.output \
        else "classifier"
    size = list(model.input_shape[1:3])
    return ModelCard(from_config({"name": preprocessing, "size": size}), names, task)


def load_model(path: str | os.PathLike, *, preprocessing: str | None = None,
               class_names=None):
    """``(keras model, ModelCard)`` from a ``.keras`` file or a run directory.

    A model without a card needs ``preprocessing`` (a convention name) and may take
    ``class_names``; a card, when present, wins.
    """
    import keras

    import cxrkit.models  # noqa: F401  (registers cxrkit's layers and models for loading)

    model_path = resolve_model_path(path)
    card = None
    if card_path(model_path).is_file() or preprocessing is None:
        card = ModelCard.load(card_path(model_path))
    try:
        model = keras.saving.load_model(model_path)
    except (OSError, ValueError, TypeError) as err:
        raise InputError(model_path, f"could not load the model: {err}") from None
    names = [t.name for t in model.inputs]
    if "gaze" in names:
        raise InputError(model_path, f"{model.name} takes the radiologist's gaze as a second "
                                     "input ('gaze': the records' gaze_dwell map); cxrkit "
                                     "explain, predict and export feed images only, so call "
                                     "it from Python with {'image': ..., 'gaze': ...}")
    return model, card or card_for(model, preprocessing, class_names)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax of class logits; a single logit is read as a sigmoid for class 1."""
    logits = np.asarray(logits, np.float64)
    if logits.shape[-1] == 1:
        p1 = 1.0 / (1.0 + np.exp(-logits[..., 0]))
        return np.stack([1.0 - p1, p1], axis=-1)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
