"""Precise BatchNorm statistics: recompute moving means and variances after training.

BatchNormalization keeps exponential moving averages (momentum 0.99) of the batch statistics
and uses them at inference. After a short training run — a demo stage of a few dozen steps —
they are still close to their initial values (mean 0, variance 1) and inference-mode features
are badly scaled, although training-mode ones are fine. Recomputing them with the final
weights from training images ("precise BN", Wu & Johnson 2021; Detectron2's ``PreciseBN``)
removes that gap. After a long run it changes little. Frozen layers (which run in inference
mode) are left alone.

The training batches are joined into as few training-mode calls of the model as fit
:data:`~cxrkit.recipes.evaluate.EAGER_CALL_PIXELS` input pixels each (all of a demo stage's
images in one call; 6 images of the real set at 640 x 512), because an eager call of
DenseNet201 costs mostly its per-op dispatch: on 2 CPU cores a training-mode call on 12 demo
images took 0.7-1.3 s, one on all 42 1.5-1.7 s. Each layer's moving mean and variance become
the average of the calls' statistics, weighted by their image counts; a call's variance is
the biased variance over all of its images, so, where Detectron2 averages the variances of
batches of the training size, one call over a whole small split gives that split's variance,
spread between batch means included.
"""

from __future__ import annotations

import keras

from cxrkit.recipes.evaluate import EAGER_CALL_PIXELS, joined_batches


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


def recompute_batchnorm(model: keras.Model, batches,
                        pixels: int = EAGER_CALL_PIXELS) -> tuple[int, int]:
    """Sets the moving statistics of ``model``'s trainable BN layers to their average over
    ``batches`` (an iterable of input batches, or of (inputs, targets)), computed in
    training-mode calls of up to ``pixels`` input pixels (see the module docstring); returns
    how many batches and images it used."""
    layers = trainable_batchnorms(model)
    momenta = [layer.momentum for layer in layers]
    used = images = 0

    def inputs():
        nonlocal used
        for batch in batches:
            used += 1
            yield batch[0] if isinstance(batch, tuple) else batch

    try:
        for joined in joined_batches(inputs(), pixels):
            count = len(keras.tree.flatten(joined)[0])
            images += count
            for layer in layers:  # a running average, each call weighted by its images
                layer.momentum = 1.0 - count / images
            # tensors: Keras warns when numpy arrays go into a model of list inputs
            model(keras.tree.map_structure(keras.ops.convert_to_tensor, joined), training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return used, images
