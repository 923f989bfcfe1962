"""Class activation maps: Grad-CAM, Grad-CAM++ and HiResCAM in one compiled, batched pass.

Definitions (docs/study.md, 2023 §3.3.2; Selvaraju et al. 2017, Chattopadhay et al. 2018,
Draelos & Carin 2020). With ``A`` the target layer's activations (B, h, w, C) and ``g`` the
gradient of the class score with respect to ``A``:

- ``gradcam``: ``ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of ``g_k``;
- ``gradcam++``: ``alpha_k = sum_ij a_ij ReLU(g_ij)``,
  ``a_ij = g^2 / (2 g^2 + sum_ij(A) g^3)`` (0 where ``g = 0``);
- ``hirescam``: ``ReLU(sum_k g_k * A_k)`` element-wise, no spatial averaging.

Every map is min-max scaled to [0, 1] per image (an all-zero map stays 0) and resized
bilinearly to the input size. The score is the logit of the chosen class (before softmax);
for a single-logit binary head it is the logit for class 1 and its negation for class 0.

The target layer is the model's declared one (``model.cam_model()``, see
:mod:`cxrkit.models`; for GazeGNN, a plain functional model, its last Grapher/FFN block,
:func:`cxrkit.models.gazegnn.cam_layer`), never "the last Conv2D". One forward and one
backward pass run for the whole batch inside a ``tf.function`` compiled once per model and
method.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from cxrkit.errors import CxrkitError


def _gradcam(acts, grads):
    return tf.reduce_sum(tf.reduce_mean(grads, axis=(1, 2), keepdims=True) * acts, axis=-1)


def _gradcam_plus_plus(acts, grads):
    g2 = tf.square(grads)
    g3 = g2 * grads
    total = tf.reduce_sum(acts, axis=(1, 2), keepdims=True)
    denominator = 2.0 * g2 + total * g3
    a = tf.where(grads != 0.0, g2 / tf.where(denominator != 0.0, denominator, 1.0), 0.0)
    weights = tf.reduce_sum(a * tf.nn.relu(grads), axis=(1, 2), keepdims=True)
    return tf.reduce_sum(weights * acts, axis=-1)


def _hirescam(acts, grads):
    return tf.reduce_sum(grads * acts, axis=-1)


METHODS = {"gradcam": _gradcam, "gradcam++": _gradcam_plus_plus, "hirescam": _hirescam}

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# model -> {layer name: (cam model, reshape)}: one tap model per target, so its compiled
# function is traced once, not on every call
_TAPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _identity(target):
    return target


def cam_model_for(model: keras.Model, layer: str | None = None):
    """``(image -> (target activations, logits), reshape)`` for ``model``.

    A declared ``cam_model()`` may return a third output, a dict of the model's other outputs
    from the same forward pass (the mlmi2024 network's ``saliency``), which
    :func:`compiled_cam` passes on.

    ``layer=None`` takes the model's declared target (``model.cam_model()``, with its
    ``cam_reshape`` for token sequences; GazeGNN's last block). A name is looked up in a
    classifier's backbone (CNN families), then in the model; the logits are the model's single
    output (or its ``"logits"`` output).
    """
    if layer is None and hasattr(model, "cam_model"):
        return model.cam_model(), getattr(model, "cam_reshape", _identity)
    if layer is None:
        from cxrkit.models.gazegnn import cam_layer, is_gazegnn

        if not is_gazegnn(model):
            raise CxrkitError(f"model {model.name!r} declares no Grad-CAM target layer; "
                              "pass layer=NAME")
        layer = cam_layer(model)
    taps = _TAPS.setdefault(model, {})
    if layer not in taps:
        taps[layer] = _tap(model, layer)
    return taps[layer]


def _tap(model: keras.Model, layer: str):
    """:func:`cam_model_for` with a named ``layer``, built."""
    if hasattr(model, "cam_model") and hasattr(model, "backbone"):
        try:
            tap = model.backbone.get_layer(layer).output
        except ValueError:
            tap = None
        if tap is not None:
            features = keras.Model(model.backbone.inputs, [tap, model.backbone.output])
            image = keras.Input(model.input_shape[1:])
            target, sequence = features(model.to_rgb(image))
            return keras.Model(image, [target, model.head(sequence)]), _identity
    try:
        tap = model.get_layer(layer).output
    except ValueError:
        raise CxrkitError(f"model {model.name!r} has no layer {layer!r}") from None
    logits = model.output["logits"] if isinstance(model.output, dict) else model.output
    cam_model = keras.Model(model.input, [tap, logits])
    frames = [la for la in model.layers if hasattr(la, "uncrop")]
    if frames:  # the network sees a crop of the input (GazeGNN): maps go back to the frame
        cam_model.cam_frame = frames[0]
    return cam_model, _identity


def _normalise(maps, size):
    maps = tf.nn.relu(maps)
    low = tf.reduce_min(maps, axis=(1, 2), keepdims=True)
    high = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
    span = high - low
    maps = tf.where(span > 0.0, (maps - low) / tf.where(span > 0.0, span, 1.0), 0.0)
    maps = tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]
    return tf.clip_by_value(maps, 0.0, 1.0)


def _image_size(cam_model: keras.Model) -> tuple[int, int]:
    """Rows and columns of the model's image input (its ``image`` input when it has several)."""
    inputs = cam_model.inputs
    image = next((t for t in inputs if t.name == "image"), inputs[0])
    return tuple(image.shape[1:3])


def compiled_cam(cam_model: keras.Model, reshape, method: str):
    """The ``tf.function`` ``(images, class_index) -> (maps, logits, others)`` for one model and
    method, compiled once and cached (``class_index`` -1 means the predicted class; ``others``:
    the cam model's dict of other outputs of the same pass, else empty). Exports call it
    inside their own graphs."""
    per_model = _COMPILED.setdefault(cam_model, {})
    if method not in per_model:
        weights_of = METHODS[method]
        frame = getattr(cam_model, "cam_frame", None)
        size = (frame.size, frame.size) if frame is not None else _image_size(cam_model)
        model_ref = weakref.ref(cam_model)  # the cache must not keep its key alive
        # Any batch size, one trace (a last, smaller batch would otherwise trace it again).
        images_spec = tf.nest.map_structure(
            lambda t: tf.TensorSpec((None, *t.shape[1:]), tf.float32), cam_model.input)

        @tf.function(input_signature=[images_spec, tf.TensorSpec((None,), tf.int32)])
        def run(images, class_index):
            acts, logits, *rest = model_ref()(images, training=False)
            if logits.shape[-1] == 1:  # single-logit binary head
                predicted = tf.cast(logits[:, 0] > 0.0, tf.int32)
                chosen = tf.where(class_index < 0, predicted, class_index)
                score = tf.where(chosen == 1, logits[:, 0], -logits[:, 0])
            else:
                predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
                chosen = tf.where(class_index < 0, predicted, class_index)
                score = tf.gather(logits, chosen, batch_dims=1)
            # The graph's gradient differentiates only the ops between the target and the
            # score; a GradientTape would also build the backward pass of everything else
            # the score depends on (the whole backbone below the target: ~45 % of a DenseNet201
            # Grad-CAM graph, and of its tracing time).
            grads = reshape(tf.gradients(score, acts)[0])
            maps = _normalise(weights_of(reshape(acts), grads), size)
            maps = maps if frame is None else frame.uncrop(maps)
            return maps, logits, (rest[0] if rest else {})

        per_model[method] = run
    return per_model[method]


def grad_cam(model: keras.Model, images, *, layer: str | None = None,
             class_index=None, method: str = "gradcam", return_logits: bool = False):
    """Class activation maps of ``images`` (B, H, W, 1) as float32 (B, H, W) in [0, 1].

    Args:
        model: a cxrkit model that declares its target (``cam_model()``), or any functional
            model together with ``layer``.
        images: the batch, preprocessed as for the model (a dict of inputs, with ``image``,
            for a model with several: GazeGNN's ``{"image", "gaze"}``).
        layer: a target layer name overriding the declared one.
        class_index: None explains each image's predicted class; an int, or one per image.
        method: ``"gradcam"``, ``"gradcam++"`` or ``"hirescam"``.
        return_logits: also return the logits of the same forward pass.
    """
    if method not in METHODS:
        raise CxrkitError(f"unknown CAM method {method!r}; choose from {', '.join(METHODS)}")
    if isinstance(images, dict):  # a model with several inputs (GazeGNN: image and gaze)
        images = {k: tf.convert_to_tensor(v, tf.float32) for k, v in images.items()}
        first = images["image"]
    else:
        images = first = tf.convert_to_tensor(images, tf.float32)
    if first.shape.rank != 4:
        raise CxrkitError(f"images must be a (B, H, W, C) batch, got shape {first.shape}")
    batch = first.shape[0]
    if class_index is None:
        index = np.full(batch, -1, np.int32)
    else:
        index = np.broadcast_to(np.asarray(class_index, np.int32), (batch,)).copy()
    cam_model, reshape = cam_model_for(model, layer)  # held: the cache refers to it weakly
    maps, logits, _ = compiled_cam(cam_model, reshape, method)(images, tf.constant(index))
    return (maps.numpy(), logits.numpy()) if return_logits else maps.numpy()
