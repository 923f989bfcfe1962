"""Explanations of image files with a saved model: what ``cxrkit explain`` does.

For each image: the training-identical preprocessing of its model card (and, for a model that
takes the radiologist's gaze, its gaze map: :func:`cxrkit.inference.model_feed`), one batched
Grad-CAM pass (which also yields the prediction), an overlay PNG, the predicted gaze-saliency
overlay when the model predicts one, and a JSON record of the prediction.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from cxrkit.card import ModelCard
from cxrkit.errors import CxrkitError
from cxrkit.explain.cam import grad_cam
from cxrkit.explain.overlay import overlay, save_png
from cxrkit.inference import GazeSource, check_gaze, model_feed, probabilities


def explain_files(model, card: ModelCard, paths: list[str | os.PathLike], out: str | os.PathLike,
                  *, method: str = "gradcam", class_name: str | None = None,
                  batch_size: int = 8, gaze: GazeSource | None = None) -> list[dict]:
    """Writes overlays under ``out`` and returns one record per image (also in
    ``out/predictions.jsonl``). ``gaze`` supplies the gaze input of a model that takes one."""
    check_gaze(card, gaze, paths[0] if paths else out)
    class_index = None
    if class_name is not None:
        if class_name not in card.class_names:
            raise CxrkitError(f"unknown class {class_name!r}; the model knows "
                              f"{', '.join(card.class_names)}")
        class_index = card.class_names.index(class_name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for start in range(0, len(paths), batch_size):
        chunk = [Path(p) for p in paths[start:start + batch_size]]
        images, feed = model_feed(card, chunk, gaze)
        maps, logits = grad_cam(model, feed, method=method, class_index=class_index,
                                return_logits=True)
        saliency = None
        if isinstance(model.output, dict) and "saliency" in model.output:
            saliency = np.asarray(model.predict(images, verbose=0)["saliency"])[..., 0]
        probs = probabilities(logits)
        for i, path in enumerate(chunk):
            stem = path.name.rsplit(".", 1)[0]
            record = {"file": str(path),
                      "probabilities": {n: float(p) for n, p in zip(card.class_names, probs[i],
                                                                    strict=True)},
                      "label": card.class_names[int(probs[i].argmax())],
                      "explained_class": card.class_names[
                          int(probs[i].argmax()) if class_index is None else class_index],
                      "method": method, "overlay": str(out / f"{stem}.{method}.png")}
            save_png(record["overlay"], overlay(images[i], maps[i]))
            if saliency is not None:
                sal = saliency[i] / max(float(saliency[i].max()), 1e-12)
                record["saliency_overlay"] = str(out / f"{stem}.saliency.png")
                save_png(record["saliency_overlay"], overlay(images[i], sal))
            records.append(record)
    with open(out / "predictions.jsonl", "w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    return records
