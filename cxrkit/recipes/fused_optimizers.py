"""Keras' Adam, AdamW and SGD with each variable's update as one TensorFlow kernel.

The update is Keras' own, term for term (the tests compare them step by step); only the graph
differs. Keras computes each variable's update from ~20 small ops (casts, the bias-correction
powers, the moment updates, the step), so the traced training step of DenseNet201 (604
trainable variables) holds ~42,000 ops, of which the optimiser makes more than half, and
tracing it costs about a minute on 2 CPU cores. Here the per-step scalars (bias-correction
powers, learning rate) are computed once per step and every float32 variable is updated by
TensorFlow's fused kernel:

- Adam / AdamW: ``ResourceApplyAdam`` (m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
  θ ← θ − lr·√(1−β2^t)/(1−β1^t) · m / (√v + ε), Keras' formula); AdamW's decoupled weight
  decay stays Keras' own step before it;
- SGD: ``ResourceApplyKerasMomentum`` (m ← μ·m − lr·g; θ ← θ + m, or θ + μ·m − lr·g with
  Nesterov) or ``ResourceApplyGradientDescent`` without momentum.

The first DenseNet201 step then traces ~2x faster. Other dtypes (mixed precision keeps float32
variables, so this is rare), sparse gradients and AMSGrad take Keras' own update.
TensorFlow-specific by nature.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class _Fused:
    """Computes the step's shared scalars once, then updates each variable in one kernel."""

    _scalars: dict | None = None

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        step = tf.cast(self.iterations + 1, tf.float32)
        self._scalars = self._step_scalars(step, tf.cast(learning_rate, tf.float32))
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._scalars = None

    def update_step(self, gradient, variable, learning_rate):
        if (self._scalars is None or variable.dtype != tf.float32 or not self._fusable()
                or isinstance(gradient, tf.IndexedSlices)):
            return super().update_step(gradient, variable, learning_rate)
        return self._apply(tf.cast(gradient, tf.float32), variable,
                           self._get_variable_index(variable))


class FusedAdam(_Fused, keras.optimizers.Adam):
    """:class:`keras.optimizers.Adam` (same arguments, same update) with fused kernels."""

    def _step_scalars(self, step, learning_rate):
        beta_1, beta_2 = tf.constant(self.beta_1, tf.float32), tf.constant(self.beta_2, tf.float32)
        return {"beta1_power": tf.pow(beta_1, step), "beta2_power": tf.pow(beta_2, step),
                "lr": learning_rate, "beta1": beta_1, "beta2": beta_2,
                "epsilon": tf.constant(self.epsilon, tf.float32)}

    def _fusable(self) -> bool:
        return not self.amsgrad

    def _apply(self, gradient, variable, index):
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle,
            v=self._velocities[index].handle, grad=gradient, **self._scalars)


class FusedAdamW(FusedAdam, keras.optimizers.AdamW):
    """:class:`keras.optimizers.AdamW` with fused kernels (the decay is Keras' own step)."""


class FusedSGD(_Fused, keras.optimizers.SGD):
    """:class:`keras.optimizers.SGD` (same arguments, same update) with fused kernels."""

    def _step_scalars(self, step, learning_rate):
        return {"lr": learning_rate, "momentum": tf.constant(self.momentum, tf.float32)}

    def _fusable(self) -> bool:
        return True

    def _apply(self, gradient, variable, index):
        if not self.momentum:
            return tf.raw_ops.ResourceApplyGradientDescent(
                var=variable.handle, alpha=self._scalars["lr"], delta=gradient)
        return tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=self.momentums[index].handle, grad=gradient,
            use_nesterov=self.nesterov, **self._scalars)
