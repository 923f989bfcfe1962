"""The fused optimisers make Keras' own updates, one TensorFlow kernel a variable."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cxrkit.recipes.fused_optimizers import FusedAdam, FusedAdamW, FusedSGD

CASES = {
    "adam": (lambda: keras.optimizers.Adam(0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6),
             lambda: FusedAdam(0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6)),
    "adamw": (lambda: keras.optimizers.AdamW(0.01, weight_decay=0.05),
              lambda: FusedAdamW(0.01, weight_decay=0.05)),
    "sgd": (lambda: keras.optimizers.SGD(0.05), lambda: FusedSGD(0.05)),
    "momentum": (lambda: keras.optimizers.SGD(0.05, momentum=0.9),
                 lambda: FusedSGD(0.05, momentum=0.9)),
    "nesterov": (lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                 lambda: FusedSGD(0.05, momentum=0.9, nesterov=True)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fused_updates_equal_keras_updates(name):
    rng = np.random.default_rng(0)
    start = [rng.normal(size=shape).astype("float32") for shape in [(5, 3), (3,), (2, 2, 4)]]
    reference = [keras.Variable(v) for v in start]
    fused = [keras.Variable(v) for v in start]
    keras_opt, fused_opt = (make() for make in CASES[name])

    @tf.function
    def fused_step(grads):  # traced, as in training
        fused_opt.apply(grads, fused)

    for _ in range(6):
        grads = [tf.constant(rng.normal(size=v.shape).astype("float32")) for v in start]
        keras_opt.apply(grads, reference)
        fused_step(grads)
    moved = max(np.abs(r.numpy() - s).max() for r, s in zip(reference, start, strict=True))
    assert moved > 0.05  # the steps did something
    for r, f in zip(reference, fused, strict=True):
        np.testing.assert_allclose(f.numpy(), r.numpy(), rtol=1e-5, atol=1e-6)


def test_one_kernel_per_variable_in_the_traced_step():
    variables = [keras.Variable(np.ones((4, 4), "float32")) for _ in range(10)]
    optimizer = FusedAdam(0.01)
    optimizer.build(variables)
    grads = [tf.ones((4, 4)) for _ in variables]
    graph = tf.function(lambda: optimizer.apply(grads, variables)).get_concrete_function().graph
    kinds = [op.type for op in graph.get_operations()]
    assert kinds.count("ResourceApplyAdam") == len(variables)
    assert kinds.count("Pow") == 2  # the bias corrections, once for all variables
