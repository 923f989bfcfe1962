"""How much of a backbone a local weights folder or file really sets: ``check-weights``.

Keras loads a ``.weights.h5`` that lacks some layers with a warning, not an error, and a
keras-hub preset of another size of the same family (``resnet_50`` given for ``resnet18``)
builds a different network without complaint. Before a long run it is worth knowing.

:func:`check_weights` builds the backbone ``name`` as the recipe would (the preset's own config
for a preset folder; the registry's for a ``.weights.h5``/``.h5`` file), sets every variable to
NaN, loads the weights, and counts the variables that are still NaN: those the file does not
cover. A preset's architecture is compared with the registry's entry for ``name`` too.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import keras
import numpy as np

from cxrkit.errors import InputError
from cxrkit.models.backbones import build_backbone, get_spec

PRESET_WEIGHTS = "model.weights.h5"


def _fill_nan(model: keras.Model) -> None:
    for variable in model.weights:
        if keras.backend.standardize_dtype(variable.dtype).startswith("float"):
            variable.assign(np.full(variable.shape, np.nan, variable.dtype))


def _architecture_differences(spec, config: dict) -> list[str]:
    """The registry's settings for ``spec`` that a preset's backbone config contradicts."""
    return [f"{key}: preset {config[key]!r}, {spec.name} needs {value!r}"
            for key, value in spec.config.items() if key in config and config[key] != value]


def _build_and_load(spec, path: Path) -> tuple[keras.Model, list[str]]:
    import keras_hub

    if path.is_dir():
        if spec.family == "inception_resnet":
            raise InputError(path, f"{spec.name} is a keras.applications model; pass its .h5 "
                                   "or .weights.h5 file, not a folder")
        config_file = path / "config.json"
        if not (config_file.is_file() and (path / PRESET_WEIGHTS).is_file()):
            raise InputError(path, f"not a keras-hub preset folder (needs config.json and "
                                   f"{PRESET_WEIGHTS}; make one with save_to_preset)")
        try:
            config = json.loads(config_file.read_text()).get("config", {})
            model = keras_hub.models.Backbone.from_preset(str(path), load_weights=False)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(path, f"not a usable keras-hub preset: {err}") from None
        return model, _architecture_differences(spec, config)
    if not path.name.endswith(".h5"):
        raise InputError(path, "expected a keras-hub preset folder or a .weights.h5/.h5 file")
    return build_backbone(spec.name, weights=None), []


def check_weights(name: str, path: str | Path) -> dict:
    """Coverage of backbone ``name`` by the weights at ``path`` (preset folder or h5 file).

    Returns ``{"model", "weights", "variables", "covered", "coverage", "layers_missing",
    "architecture_differences", "ok"}``; ``ok`` is true when every variable is set and the
    architecture matches.

    Raises:
        InputError: the path is missing, not a preset or h5 file, or holds weights whose
            shapes do not fit the backbone.
    """
    spec, path = get_spec(name), Path(path)
    if not path.exists():
        raise InputError(path, "weights not found")
    model, differences = _build_and_load(spec, path)
    _fill_nan(model)
    weights_file = path / PRESET_WEIGHTS if path.is_dir() else path
    with warnings.catch_warnings(record=True) as caught:  # partial loads only warn
        warnings.simplefilter("always")
        try:
            model.load_weights(weights_file)
        except (OSError, ValueError, KeyError) as err:
            text = " ".join(str(err).split()).split(" List of objects")[0]
            raise InputError(weights_file, f"weights do not fit the {name} backbone: "
                                           f"{text[:400]}") from None
    del caught
    missing_layers, total, covered = [], 0, 0
    for layer in model.layers:
        values = [v for v in layer.weights
                  if keras.backend.standardize_dtype(v.dtype).startswith("float")]
        unset = [v for v in values if np.isnan(keras.ops.convert_to_numpy(v)).any()]
        total += len(values)
        covered += len(values) - len(unset)
        if unset:
            missing_layers.append(layer.name)
    return {"model": name, "weights": str(path), "variables": total, "covered": covered,
            "coverage": covered / total if total else 0.0, "layers_missing": missing_layers,
            "architecture_differences": differences,
            "ok": covered == total and total > 0 and not differences}
