"""Trained models on new images: loading a model with its card, its inputs, probabilities.

:func:`load_model` returns a Keras model and its :class:`~cxrkit.card.ModelCard`; the card's
preprocessing (``card.preprocessing.prepare(read_image(path))``) turns a raw DICOM, PNG or
JPEG into exactly what the model saw in training. :func:`model_feed` does that for a batch of
files and, for a model that also takes the radiologist's gaze (GazeGNN), adds each file's gaze
map from a :data:`GazeSource`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cxrkit.card import ModelCard, card_path
from cxrkit.errors import CxrkitError, InputError
from cxrkit.preprocessing import from_config, read_image

# (image file, its raw (rows, cols)) -> the gaze input on the card's grid, float32 (rows, cols)
# in [0, 1]; raises InputError naming the file when it has no gaze. The command line builds one
# from an EGD-CXR gaze table (data_prep.egd_cxr.gaze_table.dwell_source).
GazeSource = Callable[[Path, tuple], np.ndarray]


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
    inputs = [t.name for t in model.inputs]
    task = ("gazegnn" if "gaze" in inputs else
            "mlmi2024" if isinstance(model.output, dict) and "saliency" in model.output
            else "classifier")
    size = list(model.inputs[0].shape[1:3])
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
    takes_gaze = "gaze" in [t.name for t in model.inputs]
    if card is not None and card.takes_gaze != takes_gaze:
        raise InputError(card_path(model_path), f"model card says task {card.task!r}, but the "
                                                f"model {'takes' if takes_gaze else 'has no'} "
                                                "'gaze' input (a GazeGNN card has task "
                                                "'gazegnn')")
    return model, card or card_for(model, preprocessing, class_names)


def check_gaze(card: ModelCard, gaze: GazeSource | None, where) -> None:
    """A model that takes gaze needs a gaze source, and one that does not takes none."""
    if card.takes_gaze and gaze is None:
        raise InputError(where, "this model (GazeGNN) takes the radiologist's gaze as a second "
                                "input; pass --gaze TABLE: an EGD-CXR fixations.csv or "
                                "eye_gaze.csv with a 'Time (in secs)' column and rows for each "
                                "image's DICOM_ID (its file name without the extension)")
    if gaze is not None and not card.takes_gaze:
        raise InputError(where, f"this model ({card.task}) takes no gaze input; leave out "
                                "--gaze")


def model_feed(card: ModelCard, paths, gaze: GazeSource | None = None):
    """``(images (B, rows, cols, 1), feed)`` for image files: ``feed`` is the images, or
    ``{"image": images, "gaze": (B, rows, cols, 1)}`` for a model that takes gaze (see
    :func:`check_gaze`)."""
    raws = [(Path(p), read_image(p)) for p in paths]
    images = np.stack([card.preprocessing.prepare(raw) for _, raw in raws])
    if not card.takes_gaze:
        return images, images
    maps = np.stack([np.asarray(gaze(path, raw.shape[:2]), np.float32)[..., None]
                     for path, raw in raws])
    return images, {"image": images, "gaze": maps}


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax of class logits; a single logit is read as a sigmoid for class 1."""
    logits = np.asarray(logits, np.float64)
    if logits.shape[-1] == 1:
        p1 = 1.0 / (1.0 + np.exp(-logits[..., 0]))
        return np.stack([1.0 - p1, p1], axis=-1)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
