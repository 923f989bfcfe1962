"""Precise BatchNorm statistics: recompute moving means and variances after training.

BatchNormalization keeps exponential moving averages (momentum 0.99) of the batch statistics
and uses them at inference. After a short training run — a demo stage of a few dozen steps —
they are still close to their initial values (mean 0, variance 1) and inference-mode features
are badly scaled, although training-mode ones are fine. Recomputing them as the plain average
over training batches with the final weights ("precise BN", Wu & Johnson 2021; Detectron2's
``PreciseBN``) removes that gap. After a long run it changes little. Frozen layers (which run
in inference mode) are left alone.
"""

from __future__ import annotations

import keras


def trainable_batchnorms(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The BatchNormalization layers of ``model`` that update their statistics in training.

    Layers are found through the public ``Model.layers`` of ``model`` and of every model
    nested in it (functional parts and keras-hub backbones expose their BatchNorm layers so).
    """
    found = []

    def visit(layer, trainable):
        trainable = trainable and layer.trainable
        if isinstance(layer, keras.layers.BatchNormalization):
            if trainable:
                found.append(layer)
            return
        if isinstance(layer, keras.Model):
            for child in layer.layers:
                visit(child, trainable)

    visit(model, True)
    return found


def recompute_batchnorm(model: keras.Model, batches) -> int:
    """Sets the moving statistics of ``model``'s trainable BN layers to their average over
    ``batches`` (an iterable of input batches, or of (inputs, targets)); returns the count."""
    layers = trainable_batchnorms(model)
    momenta = [layer.momentum for layer in layers]
    count = 0
    try:
        for count, batch in enumerate(batches, start=1):
            inputs = batch[0] if isinstance(batch, tuple) else batch
            for layer in layers:  # k-th batch weighs 1/k: a running plain average
                layer.momentum = 1.0 - 1.0 / count
            model(inputs, training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return count
