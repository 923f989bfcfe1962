"""Stage tasks: which model a stage trains, what it is fed, and its losses.

A stage names a ``task`` and maps the task's roles to parts (``parts = {densenet = "densenet",
unet = "unet"}``):

- ``encoder`` (densenet, densenet_head): ``encoder_model``; outputs embedding, logits;
- ``saliency`` (unet, + densenet for a dual encoder): ``saliency_model``; saliency;
- ``fusion`` (densenet, unet, fusion): ``GazeDiagnosisNet``; logits, saliency;
- ``mt_unet`` (unet: a ``multitask`` UNet part): the MT-UNet; saliency, logits;
- ``classifier`` (classifier): a registry classifier; logits.

Losses by output: ``triplet`` and ``cross_entropy`` take the label, ``kl`` the gaze heatmap;
``uncertainty`` is MT-UNet's own uncertainty-weighted sum (its ``compute_loss``).
"""

from __future__ import annotations

import keras

from cxrkit.losses import SaliencyKL, TripletLoss
from cxrkit.models import GazeDiagnosisNet, encoder_model, saliency_model

TARGET_OF = {"triplet": "label", "cross_entropy": "label", "kl": "heatmap"}


def stage_model(task: str, roles: dict[str, keras.Model]) -> keras.Model:
    """The model a stage trains, wired from its parts (which it shares weights with)."""
    if task == "encoder":
        return encoder_model(roles["densenet"], roles["densenet_head"])
    if task == "saliency":
        return saliency_model(roles.get("densenet"), roles["unet"])
    if task == "fusion":
        return GazeDiagnosisNet(roles["densenet"], roles["unet"], roles["fusion"])
    return roles["unet"] if task == "mt_unet" else roles["classifier"]


def training_view(model: keras.Model, loss_spec: dict[str, str]) -> keras.Model:
    """The stage model restricted to the outputs its losses train (Keras needs a target for
    every output it compiles); models with their own loss (MT-UNet) are returned as they are.
    """
    if "uncertainty" in loss_spec.values():
        return model
    if not isinstance(model.output, dict):  # a classifier: its one output is the logits
        (output,) = loss_spec
        return keras.Model(model.inputs, {output: model.output}, name=model.name)
    if set(model.output) == set(loss_spec):
        return model
    missing = set(loss_spec) - set(model.output)
    if missing:
        raise ValueError(f"the model has no output(s) {sorted(missing)}; it has "
                         f"{sorted(model.output)}")
    return keras.Model(model.inputs, {k: model.output[k] for k in loss_spec}, name=model.name)


def losses(loss_spec: dict[str, str], stage: dict) -> dict | None:
    """Keras losses by output name (None for the MT-UNet's built-in loss)."""
    if "uncertainty" in loss_spec.values():
        return None
    made = {}
    for output, name in loss_spec.items():
        if name == "triplet":
            made[output] = TripletLoss(margin=stage.get("margin", 1.0),
                                       strategy=stage.get("triplet_strategy", "all"))
        elif name == "kl":
            made[output] = SaliencyKL()
        else:
            made[output] = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return made


def targets(task: str, loss_spec: dict[str, str], example: dict) -> dict:
    """The ``y`` dict of one batch for a stage: each loss's output fed its target."""
    if task == "mt_unet":
        return {"saliency": example["heatmap"], "label": example["label"]}
    return {output: example[TARGET_OF[name]] for output, name in loss_spec.items()}


def metrics(task: str, loss_spec: dict[str, str]) -> dict | None:
    """Accuracy on every cross-entropy output (shown in the progress bar and TensorBoard)."""
    chosen = {output: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
              for output, name in loss_spec.items() if name == "cross_entropy"}
    return chosen or None
