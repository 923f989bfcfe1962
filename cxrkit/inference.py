"""Trained models on new image files: model cards, loading, and training-identical preprocessing.

A *model card* (``<model>.card.json`` beside a ``.keras`` file; recipes write one for every
model they save) records what a model needs at inference: which dataset convention its inputs
follow, the input size and the class names. :func:`prepare` then turns a raw DICOM, PNG or
JPEG into exactly what the model saw in training, with the converters' own functions:

- ``siim-acr``: scaled to uint8 over the image's range, CLAHE (clip 2, 8x8 tiles), area
  resize to the input size, per-image z-score (the 2023 study);
- ``egd-cxr``: padded to the input's aspect ratio, area resized, min-max to [0, 1],
  quantised to 8 bits as the records store it (the 2024 study).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import cv2
import numpy as np

from cxrkit.errors import CxrkitError, InputError

DATASETS = ("siim-acr", "egd-cxr")


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What a saved model expects (see the module docstring)."""

    dataset: str
    input_size: tuple[int, int]
    class_names: tuple[str, ...]
    task: str = "classifier"  # "classifier", or "mlmi2024" for the gaze + diagnosis network

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise CxrkitError(f"unknown dataset convention {self.dataset!r}; "
                              f"expected one of {', '.join(DATASETS)}")

    def save(self, model_path: str | os.PathLike) -> Path:
        """Writes the card beside ``model_path`` and returns its path."""
        path = card_path(model_path)
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, model_path: str | os.PathLike) -> ModelCard:
        path = card_path(model_path)
        try:
            data = json.loads(path.read_text())
            return cls(dataset=data["dataset"], input_size=tuple(data["input_size"]),
                       class_names=tuple(data["class_names"]),
                       task=data.get("task", "classifier"))
        except FileNotFoundError:
            raise InputError(path, "model card not found; it records the preprocessing and "
                                   "class names (recipes write it beside every model). For a "
                                   "model saved elsewhere pass --preprocessing siim-acr|egd-cxr "
                                   "(and --classes)") from None
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(path, f"not a valid model card: {err}") from None


def card_path(model_path: str | os.PathLike) -> Path:
    """``run/model.keras`` -> ``run/model.card.json``."""
    path = Path(model_path)
    return path.with_name(path.name.removesuffix(".keras") + ".card.json")


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


def card_for(model, dataset: str, class_names=None) -> ModelCard:
    """A card for a model saved without one: its input size, the given dataset convention,
    and the given class names (``class_0`` … by default; a single logit means 2 classes)."""
    output = model.output["logits"] if isinstance(model.output, dict) else model.output
    count = max(int(output.shape[-1]), 2)
    names = tuple(class_names) if class_names else tuple(f"class_{i}" for i in range(count))
    if len(names) != count:
        raise CxrkitError(f"the model has {count} classes but {len(names)} names were given")
    task = "mlmi2024" if isinstance(model.output, dict) and "saliency" in model.output \
        else "classifier"
    return ModelCard(dataset, tuple(model.input_shape[1:3]), names, task)


def load_model(path: str | os.PathLike, *, dataset: str | None = None, class_names=None):
    """``(keras model, ModelCard)`` from a ``.keras`` file or a run directory.

    A model without a card needs ``dataset`` (the preprocessing convention) and may take
    ``class_names``; a card, when present, wins.
    """
    import keras

    import cxrkit.models  # noqa: F401  (registers cxrkit's layers and models for loading)

    model_path = resolve_model_path(path)
    card = None
    if card_path(model_path).is_file() or dataset is None:
        card = ModelCard.load(model_path)
    try:
        model = keras.saving.load_model(model_path)
    except (OSError, ValueError, TypeError) as err:
        raise InputError(model_path, f"could not load the model: {err}") from None
    return model, card or card_for(model, dataset, class_names)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A DICOM, PNG or JPEG file as a float32 (rows, cols) grayscale image."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image not found")
    if path.suffix.lower() in (".dcm", ".dicom"):
        from data_prep.dicom import read_dicom

        return read_dicom(path)
    pixels = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise InputError(path, "not a readable PNG/JPEG/DICOM image")
    if pixels.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if pixels.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        pixels = cv2.cvtColor(pixels, code)
    return pixels.astype(np.float32)


def prepare(pixels: np.ndarray, card: ModelCard) -> np.ndarray:
    """A raw image as the model saw its training inputs: float32 (rows, cols, 1)."""
    rows, cols = card.input_size
    if card.dataset == "siim-acr":
        from data_prep.siim_acr.convert import clahe, to_uint8

        image = cv2.resize(clahe(to_uint8(pixels)), (cols, rows),
                           interpolation=cv2.INTER_AREA).astype(np.float32)
        std = image.std()
        image = (image - image.mean()) / max(float(std), 1e-6)  # as cxrkit.data.load
    else:
        from data_prep.egd_cxr.heatmap import resample_image

        image = np.round(resample_image(pixels, (rows, cols)) * 255) / 255.0
    return image.astype(np.float32)[..., None]


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax of class logits; a single logit is read as a sigmoid for class 1."""
    logits = np.asarray(logits, np.float64)
    if logits.shape[-1] == 1:
        p1 = 1.0 / (1.0 + np.exp(-logits[..., 0]))
        return np.stack([1.0 - p1, p1], axis=-1)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
