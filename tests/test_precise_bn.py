"""Precise BatchNorm statistics against numpy averages of the batch statistics."""

from __future__ import annotations

import keras
import numpy as np

from cxrkit.recipes.precise_bn import recompute_batchnorm, trainable_batchnorms


def test_moving_statistics_become_the_average_batch_statistics():
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
    assert recompute_batchnorm(model, iter(batches)) == 3
    pre = keras.Model(inputs, x)
    acts = [np.asarray(pre(b)) for b in batches]
    means = np.mean([a.mean(axis=(0, 1, 2)) for a in acts], axis=0)
    variances = np.mean([a.var(axis=(0, 1, 2)) for a in acts], axis=0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), means, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), variances, rtol=1e-3)
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), frozen_stats)
    assert bn.momentum == 0.99  # restored
