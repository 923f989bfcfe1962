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
