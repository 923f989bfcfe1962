"""Predictions from an exported SavedModel or a TensorFlow Serving REST endpoint.

Local (``--model``): each file is read (DICOM, PNG, JPEG), preprocessed exactly as in training
with the export's model card (``assets.extra/cxrkit_card.json``) and sent through
``serving_default``. Remote (``--server``): PNG/JPEG files go as base64 ``b64`` strings to the
``predict_image_bytes`` signature (the server does the preprocessing); DICOMs — which it cannot
decode — are preprocessed here and sent to ``serving_default``. Either way one record per
image: file, probabilities by class name, predicted label (and overlay files with ``out``).

A model that takes the radiologist's gaze (GazeGNN) gets each image's gaze map from a
:data:`~cxrkit.inference.GazeSource` (``--gaze TABLE`` on the command line) as the ``gaze``
input of either signature; without one it is refused with a message saying what to pass.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from cxrkit.card import ModelCard
from cxrkit.errors import CxrkitError, InputError
from cxrkit.explain.overlay import overlay, save_png
from cxrkit.inference import GazeSource, check_gaze, model_feed
from cxrkit.preprocessing import read_image
from cxrkit.serving.export import CARD_NAME


def read_card(location: str | os.PathLike) -> ModelCard:
    """The model card of an export: its version folder, or the card file itself."""
    location = Path(location)
    path = location if location.is_file() else location / "assets.extra" / CARD_NAME
    if not path.is_file():
        raise InputError(location, f"not a cxrkit export (no assets.extra/{CARD_NAME})")
    return ModelCard.load(path)


def _record(path, probabilities, class_names) -> dict:
    probabilities = [float(p) for p in probabilities]
    return {"file": str(path),
            "probabilities": dict(zip(class_names, probabilities, strict=True)),
            "label": class_names[int(np.argmax(probabilities))]}


def _overlays(record, image, outputs, i, out: Path | None):
    if out is None:
        return
    stem = Path(record["file"]).name.rsplit(".", 1)[0]
    for key in ("saliency", "gradcam"):
        if key in outputs:
            heat = np.asarray(outputs[key][i], np.float32).squeeze()
            heat = heat / max(float(heat.max()), 1e-12)
            record[f"{key}_overlay"] = str(out / f"{stem}.{key}.png")
            save_png(record[f"{key}_overlay"], overlay(image, heat))


def predict_local(paths: list, saved_model: str | os.PathLike, *, out=None,
                  batch_size: int = 8, gaze: GazeSource | None = None) -> list[dict]:
    """Records for ``paths`` from a SavedModel folder (``saved_models/<name>/<version>``);
    ``gaze`` for a model that takes gaze."""
    import tensorflow as tf

    saved_model = Path(saved_model)
    if not (saved_model / "saved_model.pb").is_file():
        raise InputError(saved_model, "not a SavedModel version folder (no saved_model.pb); "
                                      "pass saved_models/NAME/VERSION")
    card = read_card(saved_model)
    check_gaze(card, gaze, saved_model)
    try:
        serve = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    except (OSError, ValueError, KeyError, tf.errors.OpError) as err:
        raise InputError(saved_model, f"cannot load the SavedModel ({type(err).__name__}: "
                                      f"{' '.join(str(err).split())[:200]})") from None
    out = Path(out) if out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    records = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        images, feed = model_feed(card, chunk, gaze)
        feed = feed if isinstance(feed, dict) else {"image": feed}
        outputs = {k: v.numpy() for k, v in serve(**{
            name: tf.constant(value) for name, value in feed.items()}).items()}
        for i, path in enumerate(chunk):
            record = _record(path, outputs["probabilities"][i], card.class_names)
            _overlays(record, images[i], outputs, i, out)
            records.append(record)
    return records


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")[:500]
        raise CxrkitError(f"{url}: HTTP {err.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as err:
        raise CxrkitError(f"{url}: cannot reach the server: {err}") from None


def predict_server(paths: list, server: str, name: str, *, card: ModelCard | None = None,
                   gaze: GazeSource | None = None) -> list[dict]:
    """Records for ``paths`` from TensorFlow Serving's REST API (``/v1/models/NAME:predict``).

    DICOM files need ``card`` (the export's model card) to be preprocessed locally, and so
    does a gaze model (``gaze``), whose gaze map is computed here and sent beside the image.
    """
    url = f"{server.rstrip('/')}/v1/models/{name}:predict"
    if card is not None:
        check_gaze(card, gaze, url)
    elif gaze is not None:
        raise CxrkitError("a gaze input needs the export's model card (--card): the gaze map "
                          "is computed on the model's grid")
    records = []
    for path in paths:
        path = Path(path)
        dicom = path.suffix.lower() in (".dcm", ".dicom")
        if dicom and card is None:
            raise InputError(path, "a DICOM needs the export's model card (--card) to be "
                                   "preprocessed before it is sent")
        if not path.is_file():
            raise InputError(path, "image not found")
        raw = read_image(path) if dicom or gaze is not None else None
        if dicom:
            instance = card.preprocessing.prepare(raw).tolist()
        else:
            instance = {"b64": base64.b64encode(path.read_bytes()).decode()}
        if gaze is not None:
            instance = {"image" if dicom else "image_bytes": instance, "gaze": np.asarray(
                gaze(path, raw.shape[:2]), np.float32)[..., None].tolist()}
        body = {"signature_name": "serving_default" if dicom else "predict_image_bytes",
                "instances": [instance]}
        reply = _post(url, body)
        if "predictions" not in reply:
            raise CxrkitError(f"{url}: unexpected reply {str(reply)[:300]}")
        prediction = reply["predictions"][0]
        names = [n.decode() if isinstance(n, bytes) else n for n in prediction["class_names"]]
        records.append(_record(path, prediction["probabilities"], names))
    return records
