"""SavedModel export in the layout TensorFlow Serving watches: ``<to>/<name>/<version>/``.

Signatures (readable names; docs/serving.md):

- ``serving_default(image: float32 (B, rows, cols, 1))`` — the image preprocessed as in
  training — returns ``probabilities`` (B, K), ``label`` (B,) class names, ``class_names``
  (B, K), ``saliency`` (B, rows, cols, 1; the predicted gaze map of the mlmi2024 network) and
  ``gradcam`` (B, rows, cols; Grad-CAM of the predicted class, for models that classify);
- ``predict_image_bytes(image_bytes: string (B,))`` — encoded PNG/JPEG, preprocessed inside
  the graph by the card's convention (:meth:`~cxrkit.preprocessing.Preprocessing.from_bytes`)
  — the same outputs; only for conventions with an in-graph path (``egd-cxr``).

A model that takes the radiologist's gaze (GazeGNN, card task ``gazegnn``) has a second input
in both: ``gaze: float32 (B, rows, cols, 1)``, the fixation dwell-time map on the model's grid
(what ``cxrkit predict --gaze TABLE`` computes, as the converter does for ``gaze_dwell``).

Beside the SavedModel, ``assets.extra/cxrkit_card.json`` keeps the model card, and
``<to>/models.config`` lists every model under ``<to>`` for serving several at once.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from cxrkit.card import ModelCard
from cxrkit.errors import CxrkitError
from cxrkit.explain.cam import cam_model_for, compiled_cam
from cxrkit.inference import load_model
from cxrkit.models.gazegnn import is_gazegnn

CARD_NAME = "cxrkit_card.json"


def next_version(base: Path) -> int:
    """One more than the highest numeric version folder under ``base`` (1 when none)."""
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] \
        if base.is_dir() else []
    return max(versions, default=0) + 1


def _outputs(model, cam, card: ModelCard, inputs) -> dict:
    images = inputs["image"] if isinstance(inputs, dict) else inputs
    result, out = {}, None
    if cam is not None:
        cam_model, reshape = cam
        index = -tf.ones(tf.shape(images)[:1], tf.int32)
        result["gradcam"], logits, others = compiled_cam(cam_model, reshape, "gradcam")(
            inputs, index)
        names = set(model.output) if isinstance(model.output, dict) else {"logits"}
        if names <= {"logits", *others}:  # the Grad-CAM pass gave every output
            out = {"logits": logits, **others}
    if out is None:
        raw = model(inputs, training=False)
        out = raw if isinstance(raw, dict) else {"logits": raw}
    if "logits" in out:
        logits = tf.cast(out["logits"], tf.float32)
        if logits.shape[-1] == 1:
            p1 = tf.sigmoid(logits)
            probabilities = tf.concat([1.0 - p1, p1], axis=-1)
        else:
            probabilities = tf.nn.softmax(logits, axis=-1)
        names = tf.constant(list(card.class_names))
        result["probabilities"] = probabilities
        result["label"] = tf.gather(names, tf.argmax(probabilities, axis=-1))
        result["class_names"] = tf.tile(names[None], [tf.shape(images)[0], 1])
    if "saliency" in out:
        result["saliency"] = tf.cast(out["saliency"], tf.float32)
    return result


def guarded(compute, inputs: dict, rows: int, cols: int) -> dict:
    """``compute(inputs)`` with each input's rank and size, and their common batch size,
    checked at run time (``inputs``: name -> float32 batch; one ``image`` is passed on as a
    tensor, several as a dict).

    A signature does not check shapes itself and some kernels abort the process on a wrong
    rank, so no kernel reads a wrong input (each is swapped for an empty batch) and the check,
    which every later op waits for, fails with a message saying what was expected.
    """
    expected = tf.constant([rows, cols, 1])
    batch = tf.shape(next(iter(inputs.values())))[:1]
    checks, safe = [], {}
    for name, tensor in inputs.items():
        shape = tf.shape(tensor)
        padded = tf.concat([shape, [0, 0, 0, 0]], 0)
        ok = tf.logical_and(tf.equal(tf.size(shape), 4),
                            tf.reduce_all(tf.equal(padded[1:4], expected)))
        ok = tf.logical_and(ok, tf.equal(padded[0], batch[0]))
        safe[name] = tf.cond(ok, lambda t=tensor: tf.identity(t),
                             lambda: tf.zeros((0, rows, cols, 1)))
        checks.append(tf.debugging.Assert(ok, [
            f"{name} must be a float32 batch of shape (batch, {rows}, {cols}, 1)"
            + (", as many as the other inputs" if len(inputs) > 1 else "") + "; got shape",
            shape]))
    with tf.control_dependencies(checks):
        safe = {name: tf.ensure_shape(tf.identity(t), (None, rows, cols, 1))
                for name, t in safe.items()}
    return compute(safe if len(safe) > 1 else safe["image"])


def _cam(model: keras.Model):
    """The declared Grad-CAM target of a model that has one, else None."""
    if hasattr(model, "cam_model") or is_gazegnn(model):
        return cam_model_for(model)
    return None


@dataclasses.dataclass
class Servable:
    """What a SavedModel holds: ``module``, a plain ``tf.Module`` that tracks the model's
    variables as one flat list, and ``signatures``, name -> traced concrete function.

    The signatures read the variables when they run, so weights loaded into the model after
    :func:`build_servable` (the side process traces while the main one still trains) are the
    ones :meth:`save` writes.
    """

    module: tf.Module
    signatures: dict

    def save(self, path: str | os.PathLike) -> None:
        """Writes the SavedModel whose signatures are these functions."""
        tf.saved_model.save(self.module, os.fspath(path), signatures=self.signatures)

    def write_variables(self, path: str | os.PathLike) -> None:
        """Writes the variables' current values over those of the SavedModel that :meth:`save`
        wrote at ``path``. Its graph does not depend on them, so a SavedModel saved before the
        final weights were loaded becomes the one :meth:`save` would write now, for about a
        tenth of the time (the demo's network: 0.9 s against 7.7 s). The checkpoint holds
        save's keys and values; its object graph numbers the module's objects as a
        ``tf.train.Checkpoint`` does, without save's ``signatures`` node, and loaders (TensorFlow
        Serving by key, ``tf.saved_model.load`` by name) read it alike (tests/test_serving.py).
        """
        variables = Path(path) / "variables"
        shutil.rmtree(variables)
        tf.train.Checkpoint(self.module).write(os.fspath(variables / "variables"))


def build_servable(model: keras.Model, card: ModelCard) -> Servable:
    """The model's variables and its signatures, traced: ``serving_default`` and (when the
    card's preprocessing has an in-graph path) ``predict_image_bytes``; for a model that takes
    gaze, both also take ``gaze``.

    Not the Keras model: saving a Keras object graph walks every layer and traces the
    tf.functions it finds there (measured: 37 of the 74 s of exporting the demo's DenseNet201
    network), none of which the signatures need. Nor the ``tf.function`` objects: TensorFlow
    keys a function's traces by whether they were made inside ``tf.saved_model.save``, so
    saving one traces it again (5 of the 11 s of saving the demo's network); the traced
    concrete functions are the signatures, and saving takes them as they are.
    """
    rows, cols = card.input_size
    cam = _cam(model)
    module = tf.Module()
    variables = {id(v): v for v in model.variables}
    if cam is not None:
        variables.update({id(v): v for v in cam[0].variables})
    module.model_variables = [v.value for v in variables.values()]

    # Both signatures call one function, traced once (tracing the model is most of the
    # export's time).
    def spec(name):
        return tf.TensorSpec((None, rows, cols, 1), tf.float32, name=name)

    functions = {}
    if card.takes_gaze:
        core = tf.function(lambda x: _outputs(model, cam, card, x), input_signature=[
            {"image": spec("image"), "gaze": spec("gaze")}])
        functions["serving_default"] = tf.function(
            lambda image, gaze: guarded(core, {"image": image, "gaze": gaze}, rows, cols),
            input_signature=[spec("image"), spec("gaze")])
        if card.preprocessing.serves_bytes:
            functions["predict_image_bytes"] = tf.function(
                lambda image_bytes, gaze: guarded(
                    core, {"image": card.preprocessing.from_bytes(image_bytes), "gaze": gaze},
                    rows, cols),
                input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes"),
                                 spec("gaze")])
    else:
        core = tf.function(lambda x: _outputs(model, cam, card, x),
                           input_signature=[spec(None)])
        functions["serving_default"] = tf.function(
            lambda image: guarded(core, {"image": image}, rows, cols),
            input_signature=[spec("image")])
        if card.preprocessing.serves_bytes:
            functions["predict_image_bytes"] = tf.function(
                lambda image_bytes: core(card.preprocessing.from_bytes(image_bytes)),
                input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])
    return Servable(module, {name: function.get_concrete_function()
                             for name, function in functions.items()})


def write_models_config(to: Path) -> Path:
    """``models.config`` for ``tensorflow_model_server --model_config_file`` (all models)."""
    names = sorted(p.name for p in to.iterdir() if p.is_dir() and any(
        v.is_dir() and v.name.isdigit() for v in p.iterdir()))
    entries = "".join(f"  config {{\n    name: '{n}'\n    base_path: '/models/{n}'\n"
                      "    model_platform: 'tensorflow'\n  }\n" for n in names)
    path = to / "models.config"
    path.write_text(f"model_config_list {{\n{entries}}}\n")
    return path


def export_model(source: str | os.PathLike, name: str, *, version: int | None = None,
                 to: str | os.PathLike = "saved_models") -> Path:
    """Exports a run directory's model (or a ``.keras`` file with its card); returns the
    version folder."""
    model, card = load_model(source)
    return export_loaded(model, card, name, version=version, to=to)


def version_folder(name: str, version: int | None, to: str | os.PathLike) -> Path:
    """``<to>/<name>/<version>`` (the next version when None); a ``CxrkitError`` for a name
    TensorFlow Serving cannot take or a version that exists."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise CxrkitError(f"model name {name!r}: use letters, digits, '.', '_' and '-'")
    base = Path(to) / name
    target = base / str(next_version(base) if version is None else version)
    if target.exists():
        raise CxrkitError(f"{target}: version {target.name} exists; TensorFlow Serving treats "
                          "versions as immutable — choose another --version")
    return target


def export_loaded(model: keras.Model, card: ModelCard, name: str, *,
                  version: int | None = None, to: str | os.PathLike = "saved_models") -> Path:
    """Exports a model already in memory with its card (a run exports its final model so,
    without reading back the file it has just saved); returns the version folder."""
    version_folder(name, version, to)  # a bad name or an existing version: before tracing
    return export_servable(build_servable(model, card), card, name, version=version, to=to)


@dataclasses.dataclass
class StagedExport:
    """A SavedModel written ahead of its final weights (:func:`stage_export`) into a hidden
    folder beside the version folder it will become."""

    servable: Servable
    target: Path
    partial: Path

    def publish(self, *, write_variables: bool = True) -> Path:
        """Writes the servable's current weights into the SavedModel (unless
        ``write_variables`` is False: unchanged since staging), makes it the version folder
        (whole or not at all) and lists it in ``models.config``; returns the version folder."""
        if write_variables:
            self.servable.write_variables(self.partial)
        self.partial.replace(self.target)
        write_models_config(self.target.parent.parent)
        return self.target


def stage_export(servable: Servable, card: ModelCard, name: str, *, version: int | None = None,
                 to: str | os.PathLike = "saved_models") -> StagedExport:
    """Saves ``servable`` with its card as the coming version ``version`` (the next one when
    None) of ``<to>/<name>``, still hidden. Saving is most of an export's time; the side
    process of a run (:mod:`cxrkit.recipes.side_process`) stages while the main process
    still trains, and publishes once the final weights are loaded."""
    target = version_folder(name, version, to)
    partial = target.parent / f".{target.name}.partial"
    servable.save(partial)
    extra = partial / "assets.extra"
    extra.mkdir(exist_ok=True)
    card.save(extra / CARD_NAME)
    return StagedExport(servable, target, partial)


def export_servable(servable: Servable, card: ModelCard, name: str, *,
                    version: int | None = None, to: str | os.PathLike = "saved_models") -> Path:
    """Writes ``servable`` with its card as version ``version`` (the next one when None) of
    ``<to>/<name>``, and ``<to>/models.config``; returns the version folder, which appears
    whole or not at all."""
    return stage_export(servable, card, name, version=version, to=to).publish(
        write_variables=False)
