"""Grad-CAM and its variants against straightforward per-image GradientTape references."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from cxrkit.explain import comparison_grid, grad_cam, outline, overlay
from cxrkit.metrics import diff_gradcam
from cxrkit.models import build_classifier


def _small_cnn(classes=3, size=32):
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
            y = encoder.layer_norm(y + last.mlp(last.layer_norm_2(y)))
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
    model = build_classifier("resnet18", num_classes=1, input_shape=(64, 64, 1))
    x = np.random.default_rng(2).normal(size=(2, 64, 64, 1)).astype("float32")
    maps, logits = grad_cam(model, x, return_logits=True)
    predicted = (logits[:, 0] > 0).astype(int)
    np.testing.assert_allclose(maps, grad_cam(model, x, class_index=predicted), atol=1e-6)
    # class 0 uses the negated logit: its channel weights are the negation of class 1's
    features = model.cam_model()
    with tf.GradientTape() as tape:
        tape.watch(x := tf.constant(x))
        acts, out = features(x)
        score = out[:, 0]
    g = tape.gradient(score, acts).numpy()
    a = acts.numpy()
    cam0 = np.maximum((-g.mean(axis=(1, 2), keepdims=True) * a).sum(-1), 0)
    zero_map = grad_cam(model, x, class_index=0)
    assert (zero_map.max(axis=(1, 2)) > 0).tolist() == (cam0.max(axis=(1, 2)) > 0).tolist()


def test_overlays_and_grid():
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
    fig = comparison_grid(np.stack([image, image]), {"a": np.stack([heat, heat]),
                                                     "b": np.stack([heat, heat])},
                          masks=np.stack([mask, mask]))
    assert fig.dtype == np.uint8 and fig.shape[1] == 3 * (64 + 4) and fig.shape[2] == 3


def test_cam_mass_falls_inside_the_pneumothorax_of_a_trained_model(tmp_path):
    from data_prep.dicom import read_dicom
    from data_prep.phantom.siim_acr import generate_siim_acr
    from data_prep.siim_acr import rle_decode

    items = generate_siim_acr(tmp_path, n=120, size=64, seed=1)
    images = np.stack([read_dicom(i.path) for i in items]).astype("float32")
    images = (images - images.mean((1, 2), keepdims=True)) / images.std((1, 2), keepdims=True)
    labels = np.array([i.label for i in items])
    model = _small_cnn(classes=2, size=64)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images[:80, ..., None], labels[:80], epochs=30, batch_size=16, verbose=0)
    test = [i for i in range(80, 120) if labels[i] == 1]
    masks = []
    for i in test:
        mask = np.zeros((64, 64), bool)
        for row in items[i].rle_rows:
            mask |= rle_decode(row, 64, 64)
        masks.append(mask)
    maps = grad_cam(model, images[test, ..., None], layer="target", class_index=1)
    assert float(np.mean(diff_gradcam(maps, np.stack(masks)))) > 0.0


@pytest.mark.parametrize("name", ["vgg16", "densenet201"])
def test_grad_cam_on_the_declared_targets_of_other_families(name):
    """Batched maps equal a per-image computation on the model's declared target layer."""
    model = build_classifier(name, num_classes=2, input_shape=(32, 32, 1))
    x = np.random.default_rng(4).normal(size=(3, 32, 32, 1)).astype("float32")
    cam_model = model.cam_model()
    want = []
    for i in range(3):
        with tf.GradientTape() as tape:
            image = tf.constant(x[i:i + 1])
            tape.watch(image)
            acts, logits = cam_model(image)
            score = logits[0, int(np.argmax(logits[0]))]
        g, a = tape.gradient(score, acts)[0].numpy(), acts[0].numpy()
        cam = np.maximum((g.mean(axis=(0, 1)) * a).sum(-1), 0)
        cam = (cam - cam.min()) / (cam.max() - cam.min()) if cam.max() > cam.min() else cam * 0
        want.append(tf.image.resize(cam[None, ..., None], (32, 32))[0, ..., 0].numpy())
    assert cam_model.outputs[0].shape[-1] == {"vgg16": 512, "densenet201": 1920}[name]
    np.testing.assert_allclose(grad_cam(model, x), np.clip(np.stack(want), 0, 1), atol=1e-4)
