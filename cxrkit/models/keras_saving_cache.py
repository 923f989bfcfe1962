"""A cache Keras 3 means to keep when it saves or loads a model, kept.

Saving or loading a ``.keras`` file walks every layer. For each one, Keras' ``saving_lib``
asks :func:`get_attr_skipset` which attributes a plain ``Layer`` (or ``Functional``,
``Operation``, ...) has, so as to skip them. That function builds a reference object of the
kind to answer, and stores the answer in Keras' global state, but under another key than the
one it looks up (``saving_attr_skipset_*`` against ``saving_attr_skiplist_*``, Keras 3.15).
So the cache never answers, and DenseNet201's 709 layers build 709 throwaway ``Layer``
objects per save and per load: saving the demo's DenseNet201 part took 1.45-1.93 s on 2 CPU
cores, 0.95-1.54 s with the cache (three saves each, twice).

:func:`cache_attribute_skipsets` computes each kind's set once, with Keras' own function, and
stores it under the key Keras reads. The sets are what Keras would compute every time, so the
files hold the same config and weights. The recipes call it before they save or load a part
or a run's model (``save_part`` and ``load_part_weights`` in :mod:`cxrkit.recipes.parts`),
not at import: building the reference objects creates TensorFlow state (an optimiser's
variables), and a multi-worker strategy must be made before any. It costs a few lookups
once the sets are cached, and ``keras.backend.clear_session()``, which clears Keras' global
state, this cache with it, is answered by the next call. If Keras moves these internals, it
does nothing.
"""

from __future__ import annotations

KINDS = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")


def cache_attribute_skipsets() -> bool:
    """Stores each kind's attribute skip set where Keras' saving looks it up; returns False
    when this Keras has no such lookup (nothing done)."""
    try:
        from keras.src.backend.common import global_state
        from keras.src.saving import saving_lib
    except ImportError:
        return False
    lookup = getattr(saving_lib, "get_attr_skipset", None)
    if lookup is None:
        return False
    for kind in KINDS:
        key = f"saving_attr_skiplist_{kind}"
        if global_state.get_global_attribute(key) is None:
            global_state.set_global_attribute(key, lookup(kind))
    return True
