"""Stage tasks: which model a stage trains from its parts (the ``task`` of a stage).

A stage maps the task's roles to parts (``parts = {densenet = "densenet", unet = "unet"}``):

- ``encoder`` (densenet, densenet_head): ``encoder_model``; embedding_map, embedding, logits;
- ``saliency`` (unet, + optional densenet for a dual encoder): ``saliency_model``; saliency;
- ``fusion`` (densenet, unet, fusion): ``GazeDiagnosisNet``; logits, saliency;
- ``mt_unet`` (unet: a ``multitask`` UNet part): the MT-UNet; saliency, logits;
- ``classifier`` (classifier): a registry classifier; logits;
- ``gazegnn`` (classifier: a ``gazegnn`` part): GazeGNN, fed the image and the records'
  ``gaze_dwell`` map; logits.

Each task also names the model-card task of its model (:mod:`cxrkit.card`) and what the model
is fed (``inputs``: model input -> record feature; the image alone by default). Register a new
one with ``@TASKS.register("name", roles=(...))`` on a function ``roles -> keras.Model``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cxrkit.recipes.registry import Registry


@dataclass(frozen=True)
class Task:
    """A registered task: its builder and the roles a stage must (or may) fill."""

    build: Callable
    roles: tuple[str, ...]
    optional_roles: tuple[str, ...] = ()
    card_task: str = "classifier"
    inputs: tuple[tuple[str, str], ...] = ()  # (model input, record feature); () = the image

    def model_inputs(self, example: dict):
        """What the model is fed from a reader example (or the test split's arrays)."""
        if not self.inputs:
            return example["image"]
        return {name: example[feature] for name, feature in self.inputs}

    def missing_features(self, features) -> list[str]:
        """The record features this task feeds that ``features`` (a manifest's) lacks."""
        return [feature for _, feature in self.inputs if feature not in features]


TASKS = Registry("task", Task)


@TASKS.register("encoder", roles=("densenet", "densenet_head"))
def _encoder(roles):
    from cxrkit.models import encoder_model

    return encoder_model(roles["densenet"], roles["densenet_head"])


@TASKS.register("saliency", roles=("unet",), optional_roles=("densenet",), card_task="saliency")
def _saliency(roles):
    from cxrkit.models import saliency_model

    return saliency_model(roles.get("densenet"), roles["unet"])


@TASKS.register("fusion", roles=("densenet", "unet", "fusion"), card_task="mlmi2024")
def _fusion(roles):
    from cxrkit.models import GazeDiagnosisNet

    return GazeDiagnosisNet(roles["densenet"], roles["unet"], roles["fusion"])


@TASKS.register("mt_unet", roles=("unet",), card_task="mlmi2024")
def _mt_unet(roles):
    return roles["unet"]


@TASKS.register("classifier", roles=("classifier",))
def _classifier(roles):
    return roles["classifier"]


@TASKS.register("gazegnn", roles=("classifier",), card_task="gazegnn",
                inputs=(("image", "image"), ("gaze", "gaze_dwell")))
def _gazegnn(roles):
    return roles["classifier"]


def stage_model(stage, parts: dict):
    """The model ``stage`` trains, wired from ``parts`` (it shares their weights)."""
    return TASKS[stage.task].build({role: parts[name] for role, name in stage.parts.items()})
