"""Test-split evaluation of a run's stages (the ``evaluate`` of a stage), per image.

Each stage with ``evaluate`` set is rebuilt from its trained parts and run over the test split;
the evaluation names a list of evaluators (:data:`EVALUATIONS`):

- ``classification``: class probabilities (softmax of the logits) and the classification
  summary (accuracy, AUCs; :func:`cxrkit.metrics.classification_summary`);
- ``saliency``: per-image KL, CC and HS of the predicted saliency against the gaze heatmaps;
- ``both``: the two above;
- ``gradcam``: classification, plus Grad-CAM of the positive class against the masks
  (DiffGradCAM, EHR AUC; the 2023 study's Table 3.2 and Fig. 3.2).

A metric undefined for an image (:class:`~cxrkit.metrics.UndefinedMetric`, e.g. CC of a
perfectly flat prediction) is recorded as NaN and counted, never silently dropped; any other
error (mismatched shapes, NaN inputs) propagates. Register a new evaluation with
``EVALUATIONS.register("name")`` on a function ``(model, outputs, test, class_names) -> dict``
or by listing existing evaluators.
"""

from __future__ import annotations

import contextlib
import math
import pickle
from pathlib import Path

import numpy as np

from cxrkit import metrics
from cxrkit.files import write_text_atomic
from cxrkit.recipes.registry import Registry

# How many input pixels one eager call of a model takes at most, several batches joined
# (evaluation here, frozen outputs in :mod:`cxrkit.recipes.frozen_cache`): an eager call costs
# mostly its per-op dispatch, however many images it takes. 2**21 is the whole demo test split
# in one call, and 6 images of the real set at 640 x 512.
EAGER_CALL_PIXELS = 2**21

SALIENCY_METRICS = {"kl": metrics.kl_divergence, "cc": metrics.correlation_coefficient,
                    "hs": metrics.histogram_similarity}


def load_test_split(data, batch_size: int = 16) -> dict[str, np.ndarray]:
    """The whole test split in memory: images, labels, heatmaps or masks, image ids."""
    from cxrkit.data import load

    batches = list(load(data, "test", batch_size=batch_size))
    return {key: np.concatenate([b[key].numpy() for b in batches]) for key in batches[0]}


def per_image(function, pred: np.ndarray, gaze: np.ndarray) -> np.ndarray:
    """``function`` on each image pair; NaN where it is undefined for that image."""
    values = np.full(len(pred), np.nan)
    for i in range(len(pred)):
        with contextlib.suppress(metrics.UndefinedMetric):
            values[i] = function(pred[i, ..., 0], gaze[i, ..., 0])
    return values


def summarise(values: np.ndarray) -> dict:
    """Mean and std over the images where a metric is defined, and how many it is not."""
    defined = np.isfinite(values)
    return {"mean": float(values[defined].mean()) if defined.any() else None,
            "std": float(values[defined].std()) if defined.any() else None,
            "undefined": int((~defined).sum())}


def classify(model, outputs: dict, test: dict, class_names: list[str]) -> dict:
    """Probabilities and the classification summary of the ``logits`` output."""
    from cxrkit.inference import probabilities

    probs = probabilities(outputs["logits"])
    return {"classification": metrics.classification_summary(test["label"], probs, class_names),
            "probabilities": probs}


def saliency(model, outputs: dict, test: dict, class_names: list[str]) -> dict:
    """Per-image KL, CC and HS of the ``saliency`` output against the gaze heatmaps."""
    pred = np.asarray(outputs["saliency"], np.float64)
    values = {k: per_image(f, pred, test["heatmap"]) for k, f in SALIENCY_METRICS.items()}
    return {"saliency": {k: summarise(v) for k, v in values.items()}, "per_image": values,
            "predicted_saliency": pred}


def gradcam_against_masks(model, outputs: dict, test: dict, class_names: list[str], *,
                          positive: int = 1, batch_size: int = 16, steps: int = 100) -> dict:
    """Grad-CAM of the positive class on every positive test image with a mask: per image
    DiffGradCAM and EHR AUC, and the maps. A map that is zero everywhere (no positive
    gradient-weighted evidence anywhere) explains nothing: its two values are NaN, counted
    as degenerate by the report, never averaged in as 0."""
    from cxrkit.explain import grad_cam

    masks = test["mask"][..., 0] > 0.5
    chosen = np.flatnonzero((test["label"] == positive) & masks.any(axis=(1, 2)))
    if not len(chosen):
        return {"gradcam_images": chosen, "gradcam_maps": np.zeros((0, *masks.shape[1:])),
                "diff_gradcam": np.zeros(0), "ehr_auc": np.zeros(0)}
    maps = np.concatenate([grad_cam(model, test["image"][chosen[i:i + batch_size]],
                                    class_index=positive)
                           for i in range(0, len(chosen), batch_size)])
    degenerate = maps.reshape(len(maps), -1).max(axis=1) <= 0
    diff = np.asarray(metrics.diff_gradcam(maps, masks[chosen]), np.float64)
    ehr = np.asarray(metrics.ehr_auc(maps, masks[chosen], steps=steps), np.float64)
    diff[degenerate] = ehr[degenerate] = np.nan
    return {"gradcam_images": chosen, "gradcam_maps": maps, "diff_gradcam": diff,
            "ehr_auc": ehr}


EVALUATIONS = Registry("evaluation", lambda function: (function,))
EVALUATIONS["none"] = ()
EVALUATIONS["classification"] = (classify,)
EVALUATIONS["saliency"] = (saliency,)
EVALUATIONS["both"] = (classify, saliency)
EVALUATIONS["gradcam"] = (classify, gradcam_against_masks)


def input_pixels(inputs) -> int:
    """The input pixels of a batch (an array or a structure of arrays, channels last)."""
    import keras

    return sum(math.prod(a.shape[:-1]) for a in keras.tree.flatten(inputs))


def concatenate_batches(parts):
    """Batches (arrays or structures of them) joined along the batch axis."""
    import keras

    return keras.tree.map_structure(lambda *a: np.concatenate(a), *parts)


def joined_batches(batches, pixels: int = EAGER_CALL_PIXELS, *, inputs_of=lambda batch: batch):
    """``batches`` (arrays or structures of them) joined along the batch axis into as few as
    fit ``pixels`` input pixels each (those of ``inputs_of(batch)``; a batch larger than that
    stays whole), as numpy: a model called eagerly costs mostly its per-op dispatch, however
    many images a call takes. The examples keep their order."""
    import keras

    pending, held = [], 0
    for batch in batches:
        batch = keras.tree.map_structure(np.asarray, batch)
        size = input_pixels(inputs_of(batch))
        if pending and held + size > pixels:
            yield concatenate_batches(pending)
            pending, held = [], 0
        pending.append(batch)
        held += size
    if pending:
        yield concatenate_batches(pending)


def predict_batches(model, inputs, pixels: int = EAGER_CALL_PIXELS):
    """``model(batch, training=False)`` over ``inputs`` (an array or a dict of arrays) in
    batches of as many examples as fit ``pixels`` input pixels (at least one), as numpy. A
    test split is a few batches: calling the model costs less than tracing
    ``Model.predict``'s graph (seconds for DenseNet201 on a CPU), and gives the same numbers;
    the batches are as large as :data:`EAGER_CALL_PIXELS` allows."""
    import keras

    count = len(keras.tree.flatten(inputs)[0])
    size = max(1, pixels // max(1, input_pixels(inputs) // max(1, count)))
    return concatenate_batches([keras.tree.map_structure(
        keras.ops.convert_to_numpy,
        model(keras.tree.map_structure(lambda a, i=i: a[i:i + size], inputs),
              training=False)) for i in range(0, count, size)])


def save_evaluation(result: dict, path: Path) -> Path:
    """Writes :func:`evaluate_stage`'s ``result`` (numbers, arrays, names) whole or not at
    all: the side process evaluates the stages it trains, and the main process reads their
    results with :func:`load_evaluation`. Pickled: both ends are this package, and the file
    lives in the run's own folder."""
    return write_text_atomic(path, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))


def load_evaluation(path: Path) -> dict:
    """What :func:`save_evaluation` wrote."""
    return pickle.loads(Path(path).read_bytes())


def evaluate_stage(stage, model, test: dict, class_names: list[str]) -> dict:
    """Predictions and metrics of one stage's ``model`` on the test arrays."""
    from cxrkit.recipes.tasks import TASKS

    outputs = predict_batches(model, TASKS[stage.task].model_inputs(test))
    if not isinstance(outputs, dict):
        outputs = {"logits": outputs}
    result = {"label": stage.label}
    for evaluator in EVALUATIONS[stage.evaluate]:
        result.update(evaluator(model, outputs, test, class_names))
    return result
