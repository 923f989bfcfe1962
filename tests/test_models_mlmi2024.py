"""The MLMI 2024 networks: DenseNet201 taps, Res-SE-UNet family, fusion head, freezing."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cxrkit.losses import SaliencyKL, TripletLoss
from cxrkit.models import (
    GazeDiagnosisNet,
    MultiTaskUNet,
    build_parts,
    build_unet,
    encoder_model,
    freeze,
    saliency_model,
    unfreeze,
)

SHAPE = (64, 64, 1)
FILTERS = (8, 16, 32, 64, 128)


@pytest.fixture(scope="module")
def parts():
    """The study's parts: DenseNet201 (at a small input), narrow UNet."""
    return build_parts(SHAPE, unet_filters=FILTERS)


@pytest.fixture(scope="module")
def tiny_parts():
    """The same graph with a DenseNet of one dense layer per block, for training tests."""
    keras.utils.set_random_seed(0)
    return build_parts(SHAPE, unet_filters=FILTERS, densenet_blocks=[1, 1, 1, 1])


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return (rng.random((4, *SHAPE), dtype="float32"), np.array([0, 1, 2, 0]),
            rng.random((4, *SHAPE), dtype="float32"))


def _names(weights):
    return {w.path for w in weights}


def test_densenet_taps_and_unet_shapes(parts, batch):
    x, _, _ = batch
    maps = parts["densenet"](x)
    assert tuple(maps["block4"].shape) == (4, 2, 2, 1920)
    assert tuple(maps["features"].shape) == (4, 2, 2, 1920)
    assert float(np.min(maps["features"])) >= 0.0  # after the final BN-ReLU
    out = parts["unet"]({"image": keras.ops.convert_to_tensor(x), "block4": maps["block4"]})
    saliency = np.asarray(out["saliency"])
    assert saliency.shape == (4, 64, 64, 1) and (saliency > 0).all()
    np.testing.assert_allclose(saliency.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    assert tuple(out["decoder_features"].shape) == (4, 64, 64, 8)
    # squeeze-and-excitation with reduction 16 on the encoder only; 8 channels: the constant
    # gate of the authors' zero-unit SE
    assert parts["unet"].get_layer("enc5_se_reduce").units == 128 // 16
    assert parts["unet"].get_layer("enc1_se_gate").factor == 0.5
    assert not any(layer.name.startswith("dec") and "_se" in layer.name
                   for layer in parts["unet"].layers)
    # the fusion head pools 1920 DenseNet201 features and 8 decoder features
    assert [tuple(w.shape) for w in parts["fusion"].trainable_weights] == [
        (1920 + 8, 64), (64,), (64, 3), (3,)]


def test_stage_models_train_and_freezing_changes_exactly_the_intended_weights(tiny_parts, batch):
    parts = tiny_parts
    x, y, gaze = batch
    encoder = encoder_model(parts["densenet"], parts["densenet_head"])
    encoder.compile("adam", loss={"embedding": TripletLoss(),
                                  "logits": keras.losses.SparseCategoricalCrossentropy(
                                      from_logits=True)}, run_eagerly=True)
    encoder.train_on_batch(x, {"embedding": y, "logits": y})

    freeze(parts, ["densenet"])
    model = saliency_model(parts["densenet"], parts["unet"])
    assert _names(model.trainable_weights) == _names(parts["unet"].trainable_weights)
    bn = parts["densenet"].get_layer("densenet201").get_layer("bn")
    stats = bn.moving_mean.numpy().copy()
    dense_before = [w.numpy().copy() for w in parts["densenet"].weights]
    unet_before = [w.numpy().copy() for w in parts["unet"].trainable_weights]
    model.compile(keras.optimizers.Adam(1e-3), loss={"saliency": SaliencyKL()},
                  run_eagerly=True)
    model.train_on_batch(x, {"saliency": gaze})
    np.testing.assert_array_equal(bn.moving_mean.numpy(), stats)  # BN statistics held
    for w, before in zip(parts["densenet"].weights, dense_before, strict=True):
        np.testing.assert_array_equal(w.numpy(), before)
    assert all(not np.array_equal(w.numpy(), b)
               for w, b in zip(parts["unet"].trainable_weights[:3], unet_before, strict=False))

    freeze(parts, ["unet"])
    net = GazeDiagnosisNet(parts["densenet"], parts["unet"], parts["fusion"])
    assert _names(net.trainable_weights) == _names(parts["fusion"].trainable_weights)
    width = parts["densenet"].output["features"].shape[-1]
    assert [w.shape for w in parts["fusion"].trainable_weights] == [
        (width + 8, 64), (64,), (64, 3), (3,)]
    unfreeze(parts, ["densenet", "unet"])
    assert len(net.trainable_weights) > len(parts["fusion"].trainable_weights)


def test_gaze_net_round_trips_and_exposes_the_grad_cam_tap(tiny_parts, batch, tmp_path):
    parts = tiny_parts
    x, _, _ = batch
    net = GazeDiagnosisNet(parts["densenet"], parts["unet"], parts["fusion"])
    out = net.predict(x, verbose=0)
    assert out["logits"].shape == (4, 3)
    np.testing.assert_allclose(out["saliency"].sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    features, logits, others = net.cam_model()(x)
    np.testing.assert_allclose(np.asarray(logits), out["logits"], atol=1e-5)
    np.testing.assert_allclose(np.asarray(others["saliency"]), out["saliency"], atol=1e-6)
    assert tuple(features.shape) == (4, 2, 2, parts["densenet"].output["features"].shape[-1])
    net.save(tmp_path / "net.keras")
    loaded = keras.saving.load_model(tmp_path / "net.keras")
    again = loaded.predict(x, verbose=0)
    for key in ("logits", "saliency"):
        np.testing.assert_allclose(again[key], out[key], atol=1e-6)


@pytest.mark.parametrize("block", ["res_se", "double_conv"])
def test_single_encoder_unets_and_mt_unet(block, batch, tmp_path):
    x, y, gaze = batch
    unet = build_unet(SHAPE, filters=FILTERS, block=block, num_classes=3)
    assert "block4" not in [i.name for i in unet.inputs]
    mt = MultiTaskUNet(unet)
    mt.log_sigma_class.assign(0.3)
    target = {"saliency": gaze, "label": y}
    pred = mt(x)
    # by hand, Zhu's weighting as the authors' baseline runs it (sigma_c = e^0.3 learned,
    # sigma_i = 1): CE / sigma_c^2 + log(sigma_c + 1) + KL / 2 + log 2, batch means
    p = np.asarray(pred["saliency"], np.float64).reshape(4, -1)
    q = gaze.reshape(4, -1).astype(np.float64)
    q /= q.sum(1, keepdims=True)
    kl = np.mean((q * (np.log(q + 1e-7) - np.log(p + 1e-7))).sum(1))
    z = np.asarray(pred["logits"], np.float64)
    log_softmax = z - z.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    ce = -np.mean(log_softmax[np.arange(4), y])
    sigma = np.exp(0.3)
    want = ce / sigma**2 + np.log(sigma + 1) + kl / 2 + np.log(2)
    got = float(mt.compute_loss(x, target, pred))
    assert got == pytest.approx(want, rel=1e-5)
    # one scalar, the batch mean: the same batch twice gives the same loss and gradients
    import tensorflow as tf

    def gradients(images, targets):
        with tf.GradientTape() as tape:
            loss = mt.compute_loss(images, targets, mt(images, training=False))
        return tape.gradient(loss, mt.trainable_variables)

    # the same loss inside a traced graph, as a compiled training step computes it
    graph_loss = tf.function(lambda images, targets: mt.compute_loss(images, targets,
                                                                     mt(images)))
    assert float(graph_loss(x, target)) == pytest.approx(want, rel=1e-5)
    doubled = {k: np.concatenate([v, v]) for k, v in target.items()}
    for once, twice in zip(gradients(x, target), gradients(np.concatenate([x, x]), doubled),
                           strict=True):
        np.testing.assert_allclose(np.asarray(twice), np.asarray(once), rtol=1e-4, atol=1e-7)
    mt.compile(keras.optimizers.Adam(1e-2), run_eagerly=True)
    before = float(mt.log_sigma_class.numpy())
    assert np.isfinite(mt.train_on_batch(x, target))
    assert float(mt.log_sigma_class.numpy()) != before
    out = mt.predict(x, verbose=0)
    np.testing.assert_allclose(out["saliency"].sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    mt.save(tmp_path / "mt.keras")
    loaded = keras.saving.load_model(tmp_path / "mt.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["logits"], out["logits"], atol=1e-6)
    np.testing.assert_array_equal(loaded.log_sigma_class.numpy(), mt.log_sigma_class.numpy())


def test_freeze_unused_finds_layers_behind_outputs_a_view_drops():
    """A view of a part that keeps one of its two outputs: the BatchNorm and Dense that only
    feed the dropped output are frozen (they would get no gradient), nothing else is; the
    caller makes them trainable again."""
    from cxrkit.models.freeze import freeze_unused

    image = keras.Input((8, 8, 1))
    shared = keras.layers.Conv2D(4, 3, name="shared")(image)
    kept = keras.layers.Conv2D(2, 1, name="kept")(shared)
    dropped = keras.layers.Dense(3, name="dropped_dense")(
        keras.layers.BatchNormalization(name="dropped_bn")(shared))
    inner = keras.Model(image, [kept, dropped], name="inner")
    outer_in = keras.Input((8, 8, 1))
    part = keras.Model(outer_in, dict(zip(("kept", "dropped"), inner(outer_in), strict=True)),
                       name="part")
    view = keras.Model(part.inputs, {"kept": part.output["kept"]})
    unused = freeze_unused(view)
    assert sorted(layer.name for layer in unused) == ["dropped_bn", "dropped_dense"]
    trainable = {v.path.split("/")[0] for v in view.trainable_variables}
    assert trainable == {"shared", "kept"}
    for layer in unused:
        layer.trainable = True
    assert len(part.trainable_variables) == 8


@keras.saving.register_keras_serializable(package="cxrkit_test")
class _TwoDense(keras.layers.Layer):
    """A subclassed layer whose sublayers no functional graph shows."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first, self.second = keras.layers.Dense(4), keras.layers.Dense(2)

    def call(self, x):
        return self.second(self.first(x))


@pytest.mark.parametrize("kind", ["vit", "subclassed"])
def test_freeze_unused_keeps_every_sublayer_a_reached_layer_calls(kind):
    """keras-hub's ViT encoder and GazeGNN's blocks call their sublayers in Python: a reached
    layer's sublayers are all used. The reference is TensorFlow's own: exactly the variables
    that get no gradient are frozen (here none, and the dropped head's Dense)."""
    import keras_hub
    import tensorflow as tf

    from cxrkit.models.freeze import freeze_unused

    if kind == "vit":
        inputs = keras.Input((32, 32, 3))
        features = keras_hub.models.ViTBackbone(
            image_shape=(32, 32, 3), patch_size=16, num_layers=2, num_heads=2, hidden_dim=8,
            mlp_dim=8)(inputs)[:, 0]
    else:
        inputs = keras.Input((6,))
        features = _TwoDense(name="block")(inputs)
    kept = keras.layers.Dense(2, name="kept")(features)
    dropped = keras.layers.Dense(3, name="dropped")(features)
    part = keras.Model(inputs, [kept, dropped], name="part")
    outer = keras.Input(inputs.shape[1:])
    view = keras.Model(outer, {"kept": part(outer)[0]})
    with tf.GradientTape() as tape:
        out = view(np.ones((2, *inputs.shape[1:]), np.float32))["kept"]
    gradients = tape.gradient(out, view.trainable_variables)
    no_gradient = {v.path for v, g in zip(view.trainable_variables, gradients, strict=True)
                   if g is None}
    before = {v.path for v in view.trainable_variables}
    unused = freeze_unused(view)
    assert [layer.name for layer in unused] == ["dropped"]
    assert before - {v.path for v in view.trainable_variables} == no_gradient
    assert len(no_gradient) == 2 and len(view.trainable_variables) > 4


def _counts(model) -> tuple[int, int]:
    return (sum(int(np.prod(w.shape)) for w in model.trainable_weights),
            sum(int(np.prod(w.shape)) for w in model.non_trainable_weights))


@pytest.mark.parametrize(("width", "dual", "mt", "res_se_mt"), [
    # trainable parameters reaching the loss, BatchNorm statistics: the authors' PyTorch
    # models counted in ../shared/reviews/authors-models.md (KL/ stage 2 without its
    # DenseNet201; baseline/ MT-UNet with its learned sigma; the baseline with Res-SE blocks)
    (FILTERS, (1_726_873, 1_776), (543_509, 1_728), (743_180, 1_728)),
    ((64, 128, 256, 512, 1024), (48_417_217, 14_208), (34_632_837, 13_824),
     (47_388_228, 13_824)),
])
def test_parameter_counts_match_the_authors_models(width, dual, mt, res_se_mt):
    shape = (64, 64, 1)  # counts do not depend on the input size
    assert _counts(build_unet(shape, filters=width, dual_channels=1920)) == dual
    assert _counts(MultiTaskUNet(build_unet(shape, filters=width, block="double_conv",
                                            num_classes=3))) == mt
    assert _counts(build_unet(shape, filters=width, block="res_se", decoder_block="res_se",
                              num_classes=3)) == res_se_mt
    from cxrkit.models import build_fusion_head

    fusion = build_fusion_head(3, dense_channels=1920, decoder_channels=width[0])
    assert _counts(fusion) == ((1920 + width[0]) * 64 + 64 + 64 * 3 + 3, 0)  # 127,235 at 64


def test_narrower_densenet201_keeps_its_layers():
    """Growth rate 12 (the demo's width): the same 201-layer graph, narrower; the block-4 and
    feature widths follow the DenseNet rule (64 stem channels, +k a dense layer, halved by
    each transition); pretrained weights are refused for it by name."""
    from cxrkit.errors import CxrkitError
    from cxrkit.models import build_densenet_encoder

    narrow = build_densenet_encoder((32, 32, 1), growth_rate=12)
    width = 64
    for i, layers in enumerate([6, 12, 48, 32]):
        width += 12 * layers
        if i < 3:
            width //= 2
    assert width == 725
    assert narrow.output["block4"].shape[-1] == narrow.output["features"].shape[-1] == width
    taps = narrow.get_layer("densenet201")
    convs = [la for la in taps.layers if isinstance(la, keras.layers.Conv2D)]
    assert len(convs) == 1 + 2 * (6 + 12 + 48 + 32) + 3  # stem, two a dense layer, transitions
    with pytest.raises(CxrkitError, match="growth rate 32"):
        build_densenet_encoder((32, 32, 1), growth_rate=12, weights="imagenet")
