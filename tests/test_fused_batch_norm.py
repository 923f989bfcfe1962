"""The fused BatchNorm computes Keras' own layer, training and inference mode: outputs,
gradients, moving statistics."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from cxrkit.models.fused_batch_norm import BatchNormalization as FusedBatchNormalization
from cxrkit.models.fused_batch_norm import fuse_batch_norms


def _pair(shape, **kwargs):
    """A Keras BatchNorm and a fused one with the same (non-trivial) weights."""
    rng = np.random.default_rng(1)
    channels = shape[-1]
    layers = [keras.layers.BatchNormalization(**kwargs), FusedBatchNormalization(**kwargs)]
    values = [rng.normal(1.0, 0.3, channels), rng.normal(0.0, 0.5, channels),
              rng.normal(0.2, 0.4, channels), rng.uniform(0.5, 2.0, channels)]
    for layer in layers:
        layer.build(shape)
        layer.set_weights([v.astype("float32") for v in values])
    return layers


@pytest.mark.parametrize("shape", [(6, 5, 7, 4), (8, 3), (4, 5, 6)])
def test_training_step_equals_keras(shape):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, shape).astype("float32"))
    reference, fused = _pair(shape, momentum=0.8, epsilon=1e-3)
    upstream = tf.constant(rng.normal(size=shape).astype("float32"))

    def step(layer):
        @tf.function  # traced, as in training
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(y * upstream)
            return (y, *tape.gradient(loss, [x, layer.gamma.value, layer.beta.value]))
        return [t.numpy() for t in run(x)]

    for _ in range(2):  # the second step starts from updated moving statistics
        for want, got in zip(step(reference), step(fused), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        for want, got in [(reference.moving_mean, fused.moving_mean),
                          (reference.moving_variance, fused.moving_variance)]:
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    # the moving statistics follow Keras' rule: biased batch variance, momentum 0.8
    axes = tuple(range(len(shape) - 1))
    mean = x.numpy().mean(axis=axes)
    values = _pair(shape, momentum=0.8, epsilon=1e-3)[0].get_weights()
    expected = values[2] * 0.8 ** 2 + mean * (1 - 0.8 ** 2)
    np.testing.assert_allclose(fused.moving_mean.numpy(), expected, rtol=1e-5, atol=1e-5)
    expected_var = values[3] * 0.8 ** 2 + x.numpy().var(axis=axes) * (1 - 0.8 ** 2)
    np.testing.assert_allclose(fused.moving_variance.numpy(), expected_var, rtol=1e-5)


@pytest.mark.parametrize("shape", [(6, 5, 7, 4), (8, 3), (4, 5, 6)])
@pytest.mark.parametrize("frozen", [False, True])
def test_inference_equals_keras(shape, frozen):
    """Inference mode, ``training=False`` or a frozen layer (which ignores ``training``): the
    moving statistics normalise, nothing is updated, gradients flow as through Keras'."""
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(2.0, 3.0, shape).astype("float32"))
    upstream = tf.constant(rng.normal(size=shape).astype("float32"))
    reference, fused = _pair(shape, epsilon=1e-3)
    for layer in (reference, fused):
        layer.trainable = not frozen

    def step(layer):
        @tf.function
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=frozen)  # a frozen layer: inference even so
                loss = tf.reduce_sum(y * upstream)
            return (y, *tape.gradient(loss, [x, layer.gamma.value, layer.beta.value]))
        return [t.numpy() for t in run(x)]

    want, got = step(reference), step(fused)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    # against numpy: (x - moving mean) / sqrt(moving variance + eps) * gamma + beta
    gamma, beta, mean, variance = fused.get_weights()
    np.testing.assert_allclose(got[0], (x.numpy() - mean) / np.sqrt(variance + 1e-3) * gamma
                               + beta, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused(x, training=False).numpy(), got[0], rtol=1e-6, atol=1e-6)
    for w, g in zip(reference.get_weights(), fused.get_weights(), strict=True):
        np.testing.assert_array_equal(g, w)  # the moving statistics did not move


def test_unfusable_cases_are_keras():
    x = tf.constant(np.random.default_rng(2).normal(size=(4, 3, 3, 2)).astype("float32"))
    square = tf.concat([x, x[..., :1]], axis=-1)  # (4, 3, 3, 3): channels on axis 1 as well
    channels_first = _pair(square.shape, axis=1)
    for training in (True, False):
        np.testing.assert_array_equal(channels_first[1](square, training=training).numpy(),
                                      channels_first[0](square, training=training).numpy())


def test_fuse_batch_norms_switches_nested_layers_and_keeps_outputs(tmp_path):
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=(32, 32, 3))
    image = keras.Input((32, 32, 3))
    norm = keras.layers.BatchNormalization(name="head_bn")
    model = keras.Model(image, norm(keras.layers.GlobalAveragePooling2D()(backbone(image))))
    plain = keras.models.clone_model(model)
    plain.set_weights(model.get_weights())
    norms = [layer for layer in model._flatten_layers()
             if isinstance(layer, keras.layers.BatchNormalization)]

    assert fuse_batch_norms(model) == len(norms) > 5
    assert all(type(layer) is FusedBatchNormalization for layer in norms)
    assert fuse_batch_norms(model) == 0  # already switched
    x = np.random.default_rng(3).normal(size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model(x, training=True).numpy(),
                               plain(x, training=True).numpy(), rtol=1e-4, atol=1e-4)
    for want, got in zip(plain.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)  # moving stats alike

    model.save(tmp_path / "model.keras")  # the cxrkit class is registered: loads in safe mode
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded.get_layer("head_bn")) is FusedBatchNormalization
    # the keras-hub backbone is rebuilt from its arguments, with Keras' layers: the weights
    # still find their places, since the class names (and so the weight paths) are the same
    assert type(loaded.layers[1].get_layer("conv1_bn")) is keras.layers.BatchNormalization
    for want, got in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    plain.save(tmp_path / "plain.keras")
    fuse_batch_norms(loaded)
    loaded.load_weights(tmp_path / "plain.keras")  # and a plain file loads into a fused model
    for want, got in zip(plain.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
