"""Stage tasks: which model a stage trains from its parts (the ``task`` of a stage).

A stage maps the task's roles to parts (``parts = {densenet = "densenet", unet = "unet"}``):

- ``encoder`` (densenet, densenet_head): ``encoder_model``; embedding_map, embedding, logits;
- ``saliency`` (unet, + optional densenet for a dual encoder): ``saliency_model``; saliency;
- ``fusion`` (densenet, unet, fusion): ``GazeDiagnosisNet``; logits, saliency;
- ``mt_unet`` (unet: a ``multitask`` UNet part): the MT-UNet; saliency, logits;
- ``classifier`` (classifier): a registry classifier; logits.

Each task also names the model-card task of its model (:mod:`cxrkit.card`). Register a new
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


def stage_model(stage, parts: dict):
    """The model ``stage`` trains, wired from ``parts`` (it shares their weights)."""
    return TASKS[stage.task].build({role: parts[name] for role, name in stage.parts.items()})
