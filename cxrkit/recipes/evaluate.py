"""Test-split evaluation of a run's stages: Table 4.1 and Table 4.2 numbers, per image.

Each stage with ``evaluate`` set is rebuilt from its (trained) parts and run over the test
split: classification stages give class probabilities (softmax of the logits); saliency stages
give per-image KL, CC and HS against the gaze heatmaps (:mod:`cxrkit.metrics.saliency`);
``gradcam`` stages add Grad-CAM against the pneumothorax masks (DiffGradCAM, EHR AUC). A
metric undefined for an image (e.g. CC of a perfectly flat prediction) is recorded as NaN and
counted, never silently dropped.
"""

from __future__ import annotations

import contextlib

import numpy as np

from cxrkit import metrics
from cxrkit.data import load
from cxrkit.explain import grad_cam
from cxrkit.inference import probabilities
from cxrkit.recipes import tasks

SALIENCY_METRICS = {"kl": metrics.kl_divergence, "cc": metrics.correlation_coefficient,
                    "hs": metrics.histogram_similarity}


def test_arrays(data, batch_size: int = 16) -> dict[str, np.ndarray]:
    """The whole test split in memory: images, labels, heatmaps or masks, image ids."""
    batches = list(load(data, "test", batch_size=batch_size))
    return {key: np.concatenate([b[key].numpy() for b in batches]) for key in batches[0]}


def per_image(function, pred: np.ndarray, gaze: np.ndarray) -> np.ndarray:
    """``function`` on each image pair; NaN where it is undefined for that image."""
    values = np.full(len(pred), np.nan)
    for i in range(len(pred)):
        with contextlib.suppress(ValueError):
            values[i] = function(pred[i, ..., 0], gaze[i, ..., 0])
    return values


def summarise(values: np.ndarray) -> dict:
    """Mean and std over the images where a metric is defined, and how many it is not."""
    defined = np.isfinite(values)
    return {"mean": float(values[defined].mean()) if defined.any() else None,
            "std": float(values[defined].std()) if defined.any() else None,
            "undefined": int((~defined).sum())}


def evaluate_stage(stage: dict, parts: dict, test: dict, class_names: list[str]) -> dict:
    """Predictions and metrics of one stage on the test arrays."""
    roles = {role: parts[name] for role, name in stage["parts"].items()}
    model = tasks.stage_model(stage["task"], roles)
    outputs = model.predict(test["image"], batch_size=16, verbose=0)
    if not isinstance(outputs, dict):
        outputs = {"logits": outputs}
    kind = stage.get("evaluate", "none")
    result = {"label": stage.get("label", stage["task"])}
    if kind in ("classification", "both", "gradcam"):
        probs = probabilities(outputs["logits"])
        result["classification"] = metrics.classification_summary(test["label"], probs,
                                                                   class_names)
        result["probabilities"] = probs
    if kind in ("saliency", "both"):
        pred = np.asarray(outputs["saliency"], np.float64)
        values = {k: per_image(f, pred, test["heatmap"]) for k, f in SALIENCY_METRICS.items()}
        result["saliency"] = {k: summarise(v) for k, v in values.items()}
        result["per_image"] = values
        result["predicted_saliency"] = pred
    if kind == "gradcam":
        result.update(gradcam_against_masks(model, test))
    return result


def gradcam_against_masks(model, test: dict, *, positive: int = 1, batch_size: int = 16,
                          steps: int = 100) -> dict:
    """Grad-CAM of the positive class on every positive test image with a mask: per image
    DiffGradCAM and EHR AUC (the 2023 study's Table 3.2 and Fig. 3.2), and the maps."""
    masks = test["mask"][..., 0] > 0.5
    chosen = np.flatnonzero((test["label"] == positive) & masks.any(axis=(1, 2)))
    maps = np.concatenate([grad_cam(model, test["image"][chosen[i:i + batch_size]],
                                    class_index=positive)
                           for i in range(0, len(chosen), batch_size)]) if len(chosen) else \
        np.zeros((0, *masks.shape[1:]), np.float32)
    diff = metrics.diff_gradcam(maps, masks[chosen]) if len(chosen) else np.zeros(0)
    ehr = metrics.ehr_auc(maps, masks[chosen], steps=steps) if len(chosen) else np.zeros(0)
    return {"gradcam_images": chosen, "gradcam_maps": maps,
            "diff_gradcam": np.asarray(diff, np.float64), "ehr_auc": np.asarray(ehr, np.float64)}
