"""Grad-CAM and its variants against straightforward per-image GradientTape references."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from cxrkit.explain import grad_cam, outline, overlay
from cxrkit.metrics import diff_gradcam
from cxrkit.models import build_classifier


def _small_cnn(classes=3, size=32):
    """A 3-layer CNN whose last convolution is named ``target`` (the Grad-CAM layer)."""
    keras.utils.set_random_seed(0)
    image = keras.Input((size, size, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(image)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="target")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, keras.layers.Dense(classes, name="logits")(x))


def _reference(features, head, x, cls, method):
    """One image at a time, eagerly, straight from the definitions (numpy after the tape)."""
    maps = []
    for i in range(len(x)):
        acts = features(x[i:i + 1])
        with tf.GradientTape() as tape:
            tape.watch(acts)
            logits = head(acts)
            c = int(np.argmax(logits[0])) if cls is None else int(cls[i])
            score = logits[0, c]
        g, a = tape.gradient(score, acts)[0].numpy(), acts[0].numpy()
        if method == "gradcam":
            cam = (g.mean(axis=(0, 1)) * a).sum(-1)
        elif method == "hirescam":
            cam = (g * a).sum(-1)
        else:  # Grad-CAM++
            denom = 2 * g ** 2 + a.sum(axis=(0, 1)) * g ** 3
            alpha = np.where(g != 0, g ** 2 / np.where(denom != 0, denom, 1), 0)
            cam = ((alpha * np.maximum(g, 0)).sum(axis=(0, 1)) * a).sum(-1)
        cam = np.maximum(cam, 0)
        cam = (cam - cam.min()) / (cam.max() - cam.min()) if cam.max() > cam.min() else cam * 0
        maps.append(tf.image.resize(cam[None, ..., None], x.shape[1:3])[0, ..., 0].numpy())
    return np.clip(np.stack(maps), 0, 1)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam"])
def test_batched_cam_matches_the_per_image_reference(method):
    model = _small_cnn()
    features = keras.Model(model.input, model.get_layer("target").output)
    acts_in = keras.Input(features.output.shape[1:])
    head = keras.Model(acts_in, model.get_layer("logits")(model.get_layer("gap")(acts_in)))
    x = np.random.default_rng(0).normal(size=(5, 32, 32, 1)).astype("float32")
    got = grad_cam(model, x, layer="target", method=method)
    assert got.shape == (5, 32, 32) and got.dtype == np.float32
    assert got.min() >= 0 and got.max() <= 1
    np.testing.assert_allclose(got, _reference(features, head, x, None, method), atol=1e-4)
    chosen = np.array([2, 1, 0, 2, 1])
    np.testing.assert_allclose(grad_cam(model, x, layer="target", class_index=chosen,
                                        method=method),
                               _reference(features, head, x, chosen, method), atol=1e-4)


def test_vit_cam_uses_the_final_blocks_input_norm():
    model = build_classifier("vit_small", num_classes=2, input_shape=(32, 32, 1))
    x = np.random.default_rng(1).normal(size=(3, 32, 32, 1)).astype("float32")
    backbone = model.backbone
    encoder = backbone.get_layer("vit_encoder")
    last = encoder.encoder_layers[-1]
    want = []
    for i in range(3):  # eager, layer by layer, independent of the compiled tap
        h = backbone.get_layer("vit_patching_and_embedding")(np.repeat(x[i:i + 1], 3, -1))
        for block in encoder.encoder_layers[:-1]:
            h = block(h)
        with tf.GradientTape() as tape:
            t = last.layer_norm_1(h)
            tape.watch(t)
            y = h + last.mha(t, t)
            y = y + last.mlp(last.layer_norm_2(y))
            # the unrolled block is keras-hub's own block (its call, not a transcription)
            np.testing.assert_allclose(y.numpy(), last(h).numpy(), atol=1e-5)
            y = encoder.layer_norm(y)
            logits = model.output_dense(y[:, 0])
            score = logits[0, int(np.argmax(logits[0]))]
        g = tape.gradient(score, t)[0, 1:].numpy().reshape(2, 2, -1)
        a = t[0, 1:].numpy().reshape(2, 2, -1)
        cam = np.maximum((g.mean(axis=(0, 1)) * a).sum(-1), 0)
        cam = (cam - cam.min()) / (cam.max() - cam.min())
        want.append(tf.image.resize(cam[None, ..., None], (32, 32))[0, ..., 0].numpy())
        assert np.abs(g).max() > 0  # patch tokens at ln_1 do receive gradient
    maps, logits = grad_cam(model, x, return_logits=True)
    np.testing.assert_allclose(maps, np.clip(np.stack(want), 0, 1), atol=1e-4)
    np.testing.assert_allclose(logits, np.asarray(model(x)), atol=1e-5)


def test_single_logit_head_explains_either_class():
    """A single-logit head: class 1 is explained by the logit, class 0 by its negation, and
    the predicted class by whichever the logit's sign picks (reference through the backbone's
    own target layer, eagerly)."""
    model = build_classifier("resnet18", num_classes=1, input_shape=(64, 64, 1))
    x = np.random.default_rng(2).normal(size=(4, 64, 64, 1)).astype("float32")
    features = keras.Model(model.backbone.inputs,
                           model.backbone.get_layer("stack3_block1_out").output)
    acts = features(np.repeat(x, 3, axis=-1))
    with tf.GradientTape() as tape:
        tape.watch(acts)
        logit = model.get_layer("logits")(tf.reduce_mean(acts, axis=(1, 2)))[:, 0]
    g, a = tape.gradient(logit, acts).numpy(), acts.numpy()

    def reference(sign):
        cam = np.maximum((sign[:, None, None, None] * g.mean(axis=(1, 2), keepdims=True)
                          * a).sum(-1), 0)
        low, high = cam.min(axis=(1, 2), keepdims=True), cam.max(axis=(1, 2), keepdims=True)
        cam = np.where(high > low, (cam - low) / np.where(high > low, high - low, 1), 0)
        return np.clip(tf.image.resize(cam[..., None], (64, 64))[..., 0].numpy(), 0, 1)

    ones, minus = np.ones(4), -np.ones(4)
    np.testing.assert_allclose(grad_cam(model, x, class_index=1), reference(ones), atol=1e-4)
    np.testing.assert_allclose(grad_cam(model, x, class_index=0), reference(minus), atol=1e-4)
    maps, logits = grad_cam(model, x, return_logits=True)
    np.testing.assert_allclose(logits[:, 0], logit.numpy(), atol=1e-5)
    sign = np.where(logit.numpy() > 0, 1.0, -1.0)
    np.testing.assert_allclose(maps, reference(sign), atol=1e-4)


def test_overlays_and_outline():
    image = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    heat = np.zeros((32, 32))
    heat[8:16, 8:16] = 1
    gray = np.round(image * 255).astype(np.uint8)
    np.testing.assert_array_equal(overlay(image, heat, alpha=0.0), np.repeat(gray[..., None],
                                                                             3, -1))
    full = overlay(image, heat, alpha=1.0)
    assert tuple(full[20, 20]) == (128, 0, 0)  # jet at 1.0: dark red
    assert tuple(full[50, 50]) == (0, 0, 128)  # jet at 0.0: dark blue
    mask = np.zeros((64, 64))
    mask[10:20, 10:30] = 1
    drawn = outline(full, mask)
    assert tuple(drawn[10, 15]) == (0, 255, 0) and tuple(drawn[15, 15]) == tuple(full[15, 15])


def test_cam_mass_falls_inside_the_pneumothorax_of_a_trained_model(trained_siim_cnn):
    from data_prep.siim_acr import rle_decode

    model, images, labels, items = trained_siim_cnn
    test = [i for i in range(80, 120) if labels[i] == 1]
    masks = []
    for i in test:
        mask = np.zeros((64, 64), bool)
        for row in items[i].rle_rows:
            mask |= rle_decode(row, 64, 64)
        masks.append(mask)
    maps = grad_cam(model, images[test], layer="target", class_index=1)
    assert float(np.mean(diff_gradcam(maps, np.stack(masks)))) > 0.0


@pytest.mark.parametrize(("name", "target", "after"), [
    ("vgg16", "block5_conv3", lambda backbone, a: backbone.get_layer("block5_pool")(a)),
    ("densenet201", "relu", lambda backbone, a: a)])
def test_grad_cam_on_the_declared_targets_of_other_families(name, target, after):
    """Batched maps equal a per-image computation on the target layer the study names, reached
    here through the backbone's own layer (not through the model's declared tap)."""
    model = build_classifier(name, num_classes=2, input_shape=(32, 32, 1))
    x = np.random.default_rng(4).normal(size=(3, 32, 32, 1)).astype("float32")
    backbone = model.backbone
    features = keras.Model(backbone.inputs, backbone.get_layer(target).output)
    want = []
    for i in range(3):
        acts = features(np.repeat(x[i:i + 1], 3, axis=-1))
        with tf.GradientTape() as tape:
            tape.watch(acts)
            pooled = tf.reduce_mean(after(backbone, acts), axis=(1, 2))
            logits = model.get_layer("logits")(pooled)
            score = logits[0, int(np.argmax(logits[0]))]
        g, a = tape.gradient(score, acts)[0].numpy(), acts[0].numpy()
        cam = np.maximum((g.mean(axis=(0, 1)) * a).sum(-1), 0)
        cam = (cam - cam.min()) / (cam.max() - cam.min()) if cam.max() > cam.min() else cam * 0
        want.append(tf.image.resize(cam[None, ..., None], (32, 32))[0, ..., 0].numpy())
    assert model.target_layer == target
    np.testing.assert_allclose(grad_cam(model, x), np.clip(np.stack(want), 0, 1), atol=1e-4)
