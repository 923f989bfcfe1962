"""Precise BatchNorm statistics against numpy averages of the batch statistics."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from cxrkit.models.fused_batch_norm import BatchNormalization as FusedBatchNormalization
from cxrkit.recipes.precise_bn import recompute_batchnorm, trainable_batchnorms


@pytest.mark.parametrize("pixels", [None, 1])
def test_moving_statistics_become_the_statistics_of_the_training_images(pixels):
    """Three batches of 4 images: joined into one call (the default budget), the moving
    statistics are those of all 12 images; one call a batch (``pixels=1``), the average of
    the three batches' own."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    frozen = keras.layers.BatchNormalization(name="frozen")
    x = frozen(keras.layers.Conv2D(3, 1, name="conv")(inputs))
    bn = keras.layers.BatchNormalization(name="bn")
    model = keras.Model(inputs, bn(x))
    frozen.trainable = False
    assert trainable_batchnorms(model) == [bn]
    batches = [np.random.default_rng(i).normal(i, 1 + i, (4, 6, 6, 2)).astype("float32")
               for i in range(3)]
    frozen_stats = frozen.moving_mean.numpy().copy()
    budget = {} if pixels is None else {"pixels": pixels}
    assert recompute_batchnorm(model, iter(batches), **budget) == (3, 12)
    pre = keras.Model(inputs, x)
    acts = [np.asarray(pre(b)) for b in batches]
    if pixels is None:
        means = np.concatenate(acts).mean(axis=(0, 1, 2))
        variances = np.concatenate(acts).var(axis=(0, 1, 2))
        # the spread between the batches' means is in it: more than their average variance
        assert np.all(variances > np.mean([a.var(axis=(0, 1, 2)) for a in acts], axis=0))
    else:
        means = np.mean([a.mean(axis=(0, 1, 2)) for a in acts], axis=0)
        variances = np.mean([a.var(axis=(0, 1, 2)) for a in acts], axis=0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), means, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), variances, rtol=1e-3)
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), frozen_stats)
    assert bn.momentum == 0.99  # restored


def _normalised(h, layer):
    mean, var = h.mean(axis=(0, 1, 2)), h.var(axis=(0, 1, 2))
    out = (h - mean) / np.sqrt(var + layer.epsilon) * np.asarray(layer.gamma)
    return out + np.asarray(layer.beta), mean, var


@pytest.mark.parametrize("pixels", [None, 5 * 5 * 4])
def test_fused_layers_in_a_chain_get_the_weighted_average_of_each_calls_statistics(pixels):
    """cxrkit's fused layers (the demo's), two in a chain, batches of 4, 4 and 2: the second
    layer's statistics are those of the first layer's batch-normalised outputs, call by call,
    as numpy computes them, and each call weighs by its images. With a budget of 4 images a
    call, the batches run one by one (weights 4/10, 4/10, 2/10); with the default, as one
    call of all 10."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((5, 5, 2))
    first, second = FusedBatchNormalization(name="first"), FusedBatchNormalization(name="second")
    h = first(keras.layers.Dense(3, name="d1")(inputs))
    model = keras.Model([inputs], second(keras.layers.Dense(2, name="d2")(h)))
    rng = np.random.default_rng(7)
    for layer in (first, second):
        layer.gamma.assign(rng.uniform(0.5, 2, layer.gamma.shape))
        layer.beta.assign(rng.normal(0, 1, layer.beta.shape))
    batches = [(np.random.default_rng(i).normal(i, 1 + i, (n, 5, 5, 2)).astype("float32"),
                np.zeros(n)) for i, n in enumerate([4, 4, 2])]
    budget = {} if pixels is None else {"pixels": pixels}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a model of list inputs takes the joined batches quietly
        assert recompute_batchnorm(model, iter(batches), **budget) == (3, 10)
    calls = ([np.concatenate([x for x, _ in batches])] if pixels is None
             else [x for x, _ in batches])
    w1, b1 = (np.asarray(v) for v in model.get_layer("d1").weights)
    w2, b2 = (np.asarray(v) for v in model.get_layer("d2").weights)
    stats = {"first": [], "second": []}
    for x in calls:
        n1, m1, v1 = _normalised(x @ w1 + b1, first)
        _, m2, v2 = _normalised(n1 @ w2 + b2, second)
        stats["first"].append((m1, v1))
        stats["second"].append((m2, v2))
    weights = [len(x) for x in calls]
    for layer in (first, second):
        means, variances = zip(*stats[layer.name], strict=True)
        np.testing.assert_allclose(layer.moving_mean.numpy(),
                                   np.average(means, axis=0, weights=weights),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(layer.moving_variance.numpy(),
                                   np.average(variances, axis=0, weights=weights), rtol=1e-4)
        assert layer.momentum == 0.99
