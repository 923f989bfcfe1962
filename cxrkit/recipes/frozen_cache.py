"""Frozen-part outputs computed once per stage (``[training] cache_frozen``).

Stage 2 of the 2024 study trains the UNet on DenseNet201's block-4 map with DenseNet201
frozen; stage 3 trains the fusion head on the outputs of both frozen encoders. A frozen part
runs in inference mode (its BatchNorm layers use their moving statistics), so, when nothing
random runs in it, its output for an image is the same at every step of the stage: computing
it once and training the rest of the model on it gives the same updates as running the
frozen part at every step, for a fraction of the cost.

:func:`split_frozen` cuts a stage's training model in two at the tensors where deterministic
frozen work meets the trained layers: ``prefix`` (the model's inputs -> those tensors) and
``suffix`` (those tensors -> the model's outputs, sharing the model's layers and weights).
:class:`FrozenCache` runs the prefix once over a split and serves batches of its outputs with
the stage's targets. The examples are the split's; only their order differs from the reader's
(an in-memory shuffle seeded with the recipe's seed, redrawn every epoch). The engine uses
it only where it is exact: the stage draws no augmentation and shuffled, not class-balanced,
batches.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cxrkit.recipes.evaluate import EAGER_CALL_PIXELS, concatenate_batches, joined_batches


def _history(tensor):
    operation, node_index, _ = tensor._keras_history
    return operation, operation._inbound_nodes[node_index].input_tensors


def _is_input(operation) -> bool:
    return isinstance(operation, keras.layers.InputLayer)


def _deterministic(operation) -> bool:
    """No layer inside ``operation`` draws random numbers (Dropout, noise, random
    augmentation layers: each holds a seed generator)."""
    if not isinstance(operation, keras.layers.Layer):
        return True  # a keras.ops operation in the graph
    return not any(isinstance(getattr(layer, "seed_generator", None), keras.random.SeedGenerator)
                   for layer in operation._flatten_layers(include_self=True, recursive=True))


def _classify(outputs) -> dict[int, tuple[bool, bool]]:
    """``id(tensor) -> (frozen, holds_weights)`` for every tensor ``outputs`` depend on: frozen
    as :func:`split_frozen` says, and whether a frozen layer with weights (a frozen part) made
    it or its inputs. Iterative, so a deep flat model does not exhaust Python's stack."""
    found: dict[int, tuple[bool, bool]] = {}
    stack = [(t, False) for t in keras.tree.flatten(outputs)]
    while stack:
        tensor, expanded = stack.pop()
        if id(tensor) in found:
            continue
        operation, inputs = _history(tensor)
        if _is_input(operation):
            found[id(tensor)] = (True, False)
        elif not expanded:
            stack.append((tensor, True))
            stack.extend((t, False) for t in inputs if id(t) not in found)
        else:
            frozen = (not getattr(operation, "trainable_weights", ())
                      and _deterministic(operation) and all(found[id(t)][0] for t in inputs))
            heavy = frozen and (bool(getattr(operation, "weights", ()))
                                or any(found[id(t)][1] for t in inputs))
            found[id(tensor)] = (frozen, heavy)
    return found


def split_frozen(model: keras.Model):
    """``(prefix, suffix)`` for ``model``, or None when no frozen part (a layer with weights,
    none of them trainable) precedes its trained layers.

    A tensor is *frozen* when the layer that makes it has no trainable weights, draws no
    random numbers, and is fed only model inputs or frozen tensors. The cut is at the frozen
    tensors that a non-frozen layer reads; the prefix returns them by their Keras names
    (``image`` for an input the trained layers read too) and the suffix takes them so.
    """
    kinds = _classify(model.outputs)
    cut: dict[int, object] = {}
    seen: set[int] = set()
    stack = list(keras.tree.flatten(model.outputs))
    while stack:
        tensor = stack.pop()
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        if kinds[id(tensor)][0]:
            cut[id(tensor)] = tensor
        else:
            stack.extend(_history(tensor)[1])
    outputs = {id(t) for t in keras.tree.flatten(model.outputs)}
    if outputs & set(cut) or not any(kinds[i][1] for i in cut):
        return None  # an output that trains nothing, or no frozen part to compute ahead
    tensors = {t.name: t for t in cut.values()}  # Keras keys a dict of inputs by name
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.input  # fed as the model is
    prefix = keras.Model(inputs, tensors, name=f"{model.name}_frozen")
    suffix = keras.Model(tensors, model.outputs if isinstance(model.output, list)
                         else model.output, name=f"{model.name}_trained")
    return prefix, suffix


class FrozenCache:
    """The prefix's outputs over a split, with the stage's targets, held in memory.

    Args:
        prefix: the frozen prefix of :func:`split_frozen`.
        batches: the split's (inputs, targets) batches, in any order, unaugmented.
        chunk_pixels: how many input pixels one call of the prefix takes at most
            (:data:`cxrkit.recipes.evaluate.EAGER_CALL_PIXELS`; several batches joined, a
            larger batch alone). In inference mode the prefix's output for an image does not
            depend on the other images of its call.
    """

    def __init__(self, prefix: keras.Model, batches, chunk_pixels: int = EAGER_CALL_PIXELS):
        features, targets = [], []
        for inputs, y in joined_batches(batches, chunk_pixels, inputs_of=lambda b: b[0]):
            features.append(keras.tree.map_structure(np.asarray,
                                                     prefix(inputs, training=False)))
            targets.append(y)
        self.features = concatenate_batches(features)
        self.targets = concatenate_batches(targets)
        self.count = len(next(iter(keras.tree.flatten(self.targets))))

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in keras.tree.flatten(self.features))

    def dataset(self, batch_size: int, *, shuffle: bool, seed: int | None = None):
        """(features, targets) batches; ``shuffle`` redraws the order every epoch."""
        ds = tf.data.Dataset.from_tensor_slices((self.features, self.targets))
        if shuffle:
            ds = ds.shuffle(self.count, seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
