"""Stage losses: what each ``loss = {output = "name"}`` of a stage computes and is fed.

- ``triplet``: :class:`cxrkit.losses.TripletLoss` on the output (the stage's ``margin``,
  ``triplet_strategy`` and ``triplet_reduction``), fed the label;
- ``cross_entropy``: sparse categorical cross-entropy on logits, fed the label (and tracked
  as accuracy);
- ``kl``: :class:`cxrkit.losses.SaliencyKL` on the saliency map, fed the gaze heatmap;
- ``uncertainty``: the model's own loss (MT-UNet's ``compute_loss``), fed the heatmap and the
  label under its own output names.

Register a new one with ``@LOSSES.register("name", target="example key")`` on a function
``stage -> keras loss``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cxrkit.recipes.registry import Registry


@dataclass(frozen=True)
class Loss:
    """A registered loss: its factory (None: the model computes its own loss), the example key
    its output is fed, or ``model_targets`` (y name -> example key) for a model's own loss,
    and whether its output is tracked as accuracy."""

    make: Callable | None
    target: str = ""
    model_targets: dict = field(default_factory=dict)
    accuracy: bool = False


LOSSES = Registry("loss", Loss)


@LOSSES.register("triplet", target="label")
def _triplet(stage):
    from cxrkit.losses import TripletLoss

    return TripletLoss(margin=stage.margin, strategy=stage.triplet_strategy,
                       reduction_over=stage.triplet_reduction)


@LOSSES.register("cross_entropy", target="label", accuracy=True)
def _cross_entropy(stage):
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@LOSSES.register("kl", target="heatmap")
def _kl(stage):
    from cxrkit.losses import SaliencyKL

    return SaliencyKL()


LOSSES["uncertainty"] = Loss(make=None, model_targets={"saliency": "heatmap", "label": "label"})


def own_loss(stage) -> bool:
    """Whether the stage's model computes its own loss (then ``compile`` takes none)."""
    return any(LOSSES[name].make is None for name in stage.loss.values())


def keras_losses(stage) -> dict | None:
    """Keras losses by output name (None for a model with its own loss)."""
    if own_loss(stage):
        return None
    return {output: LOSSES[name].make(stage) for output, name in stage.loss.items()}


def targets(stage, example: dict) -> dict:
    """The ``y`` dict of one batch for ``stage``: each output fed its loss's target."""
    y = {}
    for output, name in stage.loss.items():
        loss = LOSSES[name]
        if loss.make is None:
            y.update({key: example[source] for key, source in loss.model_targets.items()})
        else:
            y[output] = example[loss.target]
    return y


def accuracy_metrics(stage) -> dict | None:
    """Accuracy on every output whose loss tracks it (progress bar and TensorBoard)."""
    import keras

    chosen = {output: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
              for output, name in stage.loss.items() if LOSSES[name].accuracy}
    return chosen or None


def training_view(model, stage):
    """The stage model restricted to the outputs its losses train (Keras needs a target for
    every output it compiles); a model with its own loss is returned as it is."""
    import keras

    if own_loss(stage):
        return model
    if not isinstance(model.output, dict):  # a classifier: its one output is the logits
        (output,) = stage.loss
        return keras.Model(model.inputs, {output: model.output}, name=model.name)
    missing = set(stage.loss) - set(model.output)
    if missing:
        raise ValueError(f"the model has no output(s) {sorted(missing)}; it has "
                         f"{sorted(model.output)}")
    if set(model.output) == set(stage.loss):
        return model
    return keras.Model(model.inputs, {k: model.output[k] for k in stage.loss}, name=model.name)
