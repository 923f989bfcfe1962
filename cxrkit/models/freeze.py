"""Freezing and unfreezing named parts between training stages.

Keras 3 semantics, which the recipes rely on: a model or layer with ``trainable = False``
contributes no trainable weights, and a frozen ``BatchNormalization`` runs in inference mode
(it uses and keeps its moving statistics even under ``training=True``). Recompile a model
after changing what is trainable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import keras


def _lookup(parts, name: str) -> keras.layers.Layer:
    if isinstance(parts, Mapping):
        if name not in parts:
            raise KeyError(f"no part named {name!r}; parts: {', '.join(parts)}")
        return parts[name]
    return parts.get_layer(name)


def set_trainable(parts: Mapping[str, keras.layers.Layer] | keras.Model,
                  trainable: Mapping[str, bool]) -> None:
    """Sets ``trainable`` of each named part (a dict of parts, or named layers of a model)."""
    for name, flag in trainable.items():
        _lookup(parts, name).trainable = bool(flag)


def freeze(parts, names: Iterable[str]) -> None:
    """Makes the named parts non-trainable (BatchNorm statistics included)."""
    set_trainable(parts, dict.fromkeys(names, False))


def unfreeze(parts, names: Iterable[str]) -> None:
    """Makes the named parts trainable again."""
    set_trainable(parts, dict.fromkeys(names, True))


def _functional(layer) -> bool:
    """Whether ``layer`` is a functional model (a graph of layers that can be walked)."""
    return isinstance(layer, keras.Model) and getattr(layer, "outputs", None) is not None


def _reached(outputs, found: set[int]) -> None:
    """Adds to ``found`` (by ``id``) every operation the symbolic ``outputs`` depend on,
    looking inside nested functional models through the output each call uses."""
    stack = list(keras.tree.flatten(outputs))
    while stack:
        tensor = stack.pop()
        operation, node_index, tensor_index = tensor._keras_history
        if _functional(operation) and hasattr(operation, "_inbound_nodes"):
            _reached([keras.tree.flatten(operation.output)[tensor_index]], found)
        if id(operation) in found and not isinstance(operation, keras.Model):
            continue
        found.add(id(operation))
        stack.extend(operation._inbound_nodes[node_index].input_tensors)


def freeze_unused(model: keras.Model) -> list[keras.layers.Layer]:
    """Makes the layers with trainable weights that no output of ``model`` depends on
    non-trainable, and returns them.

    A training view that keeps some of a part's outputs (the triplet stage uses DenseNet201's
    block 4, not the final BatchNorm behind its other output) would otherwise hand the
    optimizer variables that get no gradient. Make them trainable again after the stage
    (``layer.trainable = True`` on each): setting the part trainable does not reach a
    sublayer when the part's own flag does not change.
    """
    found: set[int] = set()
    _reached(model.output, found)
    # A reached layer that is not a functional model (keras-hub's ViT encoder, a GazeGNN
    # block) calls its sublayers in Python, where no graph shows which it uses: all of them.
    opaque = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if id(layer) in found and not _functional(layer)]
    for layer in opaque:
        found.update(map(id, layer._flatten_layers(include_self=False, recursive=True)))
    unused = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if layer.trainable_weights and id(layer) not in found
              and not isinstance(layer, keras.Model)]
    for layer in unused:
        layer.trainable = False
    return unused
