"""Keras' BatchNormalization computed by TensorFlow's one-kernel ``FusedBatchNormV3``.

Keras computes a training-mode BatchNorm from ~35 small ops (the moments, the normalisation, the
two moving-average updates, their casts and constants) and its gradient from as many again, so
DenseNet201's 201 BatchNorm layers make most of its traced training step: ~23,000 ops with the
fused optimiser (:mod:`cxrkit.recipes.fused_optimizers`, 64-px demo width). Tracing and first
running that graph is what a demo stage spends most of its time on. :class:`BatchNormalization`
here computes the same step with TensorFlow's ``FusedBatchNormV3`` (and its one-kernel
gradient), which also updates the moving mean; the step then has ~11,000 ops, and tracing and
first running it takes ~6-8 s instead of ~12 s on 2 CPU cores. Inference mode (``training``
false, or a frozen layer) is the same kernel with ``is_training=False`` on the moving
statistics, in place of Keras' ~10 ops a layer: every validation pass, frozen-part forward,
evaluation, Grad-CAM and export of a DenseNet201 traces (or, eagerly, dispatches) 200 ops
instead of ~2,000 for its BatchNorm layers.

The layer is Keras' own in every other respect: same arguments, variables, config and
inference results (it *is* a ``keras.layers.BatchNormalization``). In training mode it
normalises with the biased batch variance and updates ``moving_mean`` and ``moving_variance``
with ``momentum`` exactly as Keras does (TensorFlow's kernel returns the Bessel-corrected
variance; it is turned back into the biased one here), so the tests compare it with Keras'
layer to float rounding, in both modes, outputs and gradients. Its class name is Keras' too,
because Keras keys a saved layer's weights by its
class name: a file saved from a fused model loads into a plain one and back. Inputs of any rank
with the channel axis last are normalised over all other axes (reshaped to NHWC for the
kernel). Masks, renorm, synchronised BatchNorm and non-float32
computation take Keras' own path.

:func:`fuse_batch_norms` switches the plain BatchNormalization layers of built models (keras-hub
backbones included) to this class in place: a keras-hub backbone builds its own layers, and the
switch changes only which ``call`` runs. TensorFlow-specific by nature, like the optimisers.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="cxrkit")
class BatchNormalization(keras.layers.BatchNormalization):
    """:class:`keras.layers.BatchNormalization` computed by ``FusedBatchNormV3``, training and
    inference mode alike."""

    def _fusable(self, inputs, mask) -> bool:
        rank = len(inputs.shape)
        return (mask is None and not self.renorm and not self.synchronized and rank >= 2
                and self.axis % rank == rank - 1 and inputs.dtype == tf.float32
                and self.compute_dtype == "float32" and self.scale and self.center)

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        shape = tf.shape(inputs)
        channels = inputs.shape[-1]
        images = inputs if len(inputs.shape) == 4 else tf.reshape(inputs, [-1, 1, 1, channels])
        if bool(training) and self.trainable:
            outputs = self._training_step(images, channels)
        else:  # Keras' inference mode: the moving statistics
            outputs = tf.raw_ops.FusedBatchNormV3(
                x=images, scale=self.gamma.value, offset=self.beta.value,
                mean=self.moving_mean.value, variance=self.moving_variance.value,
                epsilon=self.epsilon, data_format="NHWC", is_training=False)[0]
        return outputs if len(inputs.shape) == 4 else tf.reshape(outputs, shape)

    def _training_step(self, images, channels):
        rate = 1.0 - self.momentum
        # The kernel updates the moving mean itself, (1 - rate) * old + rate * batch mean as
        # Keras does. Given a zero "old variance" its variance output is rate * the
        # Bessel-corrected batch variance, which is turned into Keras' update with the biased
        # one: momentum * old + rate * biased.
        outputs, moving_mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=images, scale=self.gamma.value, offset=self.beta.value,
            mean=self.moving_mean.value, variance=tf.zeros([channels]), epsilon=self.epsilon,
            exponential_avg_factor=rate, data_format="NHWC", is_training=True)
        count = tf.cast(tf.size(images) // channels, tf.float32)
        self.moving_mean.assign(moving_mean)
        self.moving_variance.assign(self.moving_variance.value * self.momentum
                                    + variance * ((count - 1.0) / count))
        return outputs


def fuse_batch_norms(model: keras.Model) -> int:
    """Switches every Keras ``BatchNormalization`` in ``model`` and the models nested in it to
    :class:`BatchNormalization` of this module; returns how many. Weights, config and weight
    paths are untouched; a functional model saved afterwards names the cxrkit class
    (registered, so it loads in safe mode)."""
    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if type(layer) is keras.layers.BatchNormalization:
            layer.__class__ = BatchNormalization
            count += 1
    return count
