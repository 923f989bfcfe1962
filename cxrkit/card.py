"""The model card: what a saved model needs at inference, written and read here only.

A card records the model's preprocessing convention with its parameters
(:mod:`cxrkit.preprocessing`, whose ``size`` is the model's input size), the class names and
the task (``"classifier"``; ``"mlmi2024"`` for the gaze + diagnosis network, which also
predicts a saliency map; ``"saliency"`` for a gaze predictor alone; ``"gazegnn"`` for a
classifier that also takes the radiologist's gaze: a second input ``gaze``, the fixation
dwell-time map on the image's grid, :attr:`ModelCard.takes_gaze`). Recipes save one beside
every model (``model.card.json`` beside ``model.keras``); exports keep it as
``assets.extra/cxrkit_card.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from cxrkit.errors import CxrkitError, InputError
from cxrkit.files import write_text_atomic
from cxrkit.preprocessing import Preprocessing, from_config

TASKS = ("classifier", "mlmi2024", "saliency", "gazegnn")


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """See the module docstring."""

    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    task: str = "classifier"

    def __post_init__(self):
        if self.task not in TASKS:
            raise CxrkitError(f"unknown model task {self.task!r}; expected one of "
                              f"{', '.join(TASKS)}")

    @property
    def takes_gaze(self) -> bool:
        """Whether the model's inputs are ``{"image", "gaze"}`` rather than the image alone."""
        return self.task == "gazegnn"

    @property
    def input_size(self) -> tuple[int, int]:
        """(rows, cols) of the model input."""
        return self.preprocessing.size

    def to_json(self) -> str:
        return json.dumps({"preprocessing": self.preprocessing.get_config(),
                           "class_names": list(self.class_names), "task": self.task},
                          indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str | os.PathLike) -> ModelCard:
        """Parses a card; :class:`InputError` naming ``source`` when it is not one."""
        try:
            data = json.loads(text)
            return cls(from_config(data["preprocessing"]), tuple(data["class_names"]),
                       data.get("task", "classifier"))
        except json.JSONDecodeError as err:
            raise InputError(source, f"model card is not valid JSON ({err.msg})") from None
        except (KeyError, TypeError, AttributeError, CxrkitError) as err:
            raise InputError(source, f"not a valid model card: {err}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the card to ``path`` (a ``.json`` file) atomically."""
        return write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelCard:
        """Reads a card file; :class:`InputError` when it is missing or malformed."""
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise InputError(path, "model card not found; it records the preprocessing and "
                                   "class names (recipes write it beside every model). For a "
                                   "model saved elsewhere pass --preprocessing NAME "
                                   "(and --classes)") from None
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(path, f"cannot read the model card ({err})") from None
        return cls.from_json(text, path)


def card_path(model_path: str | os.PathLike) -> Path:
    """``run/model.keras`` -> ``run/model.card.json``."""
    path = Path(model_path)
    return path.with_name(path.name.removesuffix(".keras") + ".card.json")
