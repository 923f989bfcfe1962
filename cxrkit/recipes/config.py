"""Recipe files: loading, ``extends``, ``--set`` overrides and validation.

A recipe is a TOML file (``recipes/*.toml``). Tables nest; ``[stages.<name>]`` tables run in
the order they are written. A recipe may start with ``extends = "other.toml"`` (a path relative
to itself): the other recipe is loaded first and this one's tables are merged over it, key by
key, so a profile only lists what it changes. ``demo_profile`` names the profile that
``cxrkit recipe run`` uses when no ``--data`` is given.

:func:`apply_overrides` takes ``KEY=VALUE`` strings (``stages.saliency.epochs=5``); the value
is read as TOML (``5``, ``1e-3``, ``true``, ``[8, 16]``, ``"text"``; a bare word is a string).
A key that does not exist in the resolved recipe, or a value of another type than the one
there, is an error before anything runs. :func:`validate` checks the whole recipe the same way.
"""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path

from cxrkit.errors import CxrkitError, InputError

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"

TASKS = {"encoder": ("densenet", "densenet_head"), "saliency": ("unet",),
         "fusion": ("densenet", "unet", "fusion"), "mt_unet": ("unet",),
         "classifier": ("classifier",)}
LOSSES = ("triplet", "cross_entropy", "kl", "uncertainty")
EVALUATIONS = ("none", "classification", "saliency", "both", "gradcam")
OPTIMIZERS = ("adam", "sgd")
BUILDERS = ("densenet_encoder", "dense_head", "unet", "fusion", "classifier")
# keys a stage may leave out (their defaults come from [training] or the engine)
STAGE_OPTIONAL = {"enabled": True, "epochs": 0, "learning_rate": 0.0, "batches": "",
                  "margin": 0.0, "triplet_strategy": "", "label": "", "evaluate": "",
                  "run_eagerly": False, "precise_bn_batches": 0, "optimizer": ""}


def find_recipe(name_or_path: str | os.PathLike) -> Path:
    """A recipe name (``mlmi2024``) in ``recipes/``, or a path to a ``.toml`` file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise InputError(path, "recipe file not found")
        return path
    candidate = RECIPES_DIR / f"{name_or_path}.toml"
    if not candidate.is_file():
        known = ", ".join(list_recipes()) or "none"
        raise CxrkitError(f"unknown recipe {name_or_path!r}; known: {known}")
    return candidate


def list_recipes() -> list[str]:
    """Names of the recipes shipped in ``recipes/``."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def merge(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base``, recursively for tables."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_recipe(name_or_path: str | os.PathLike, _seen: tuple = ()) -> dict:
    """The resolved recipe (``extends`` applied) as a plain dict."""
    path = find_recipe(name_or_path).resolve()
    if path in _seen:
        raise InputError(path, "recipe extends itself")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise InputError(path, f"not valid TOML: {err}") from None
    parent = data.pop("extends", None)
    if parent is not None:
        data = merge(load_recipe(path.parent / parent, (*_seen, path)), data)
    data.setdefault("source", str(path))
    return data


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _same_type(old, new) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, float) and isinstance(new, int):
        return True
    return isinstance(new, type(old))


def apply_overrides(recipe: dict, overrides: list[str]) -> dict:
    """A copy of ``recipe`` with each ``KEY=VALUE`` applied (see the module docstring)."""
    out = copy.deepcopy(recipe)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise CxrkitError(f"--set {item!r}: expected KEY=VALUE")
        node, parts = out, key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                where = ".".join(parts[:depth + 1])
                raise CxrkitError(f"--set {key}: unknown key {where!r}")
            node = node[part]
        last = parts[-1]
        optional = len(parts) == 3 and parts[0] == "stages" and last in STAGE_OPTIONAL
        if last not in node and optional:
            node[last] = STAGE_OPTIONAL[last]
        if last not in node:
            raise CxrkitError(f"--set {key}: unknown key; {'.'.join(parts[:-1]) or 'the recipe'}"
                              f" has {', '.join(sorted(node))}")
        value = _parse_value(text)
        if not _same_type(node[last], value):
            raise CxrkitError(f"--set {key}={text}: expected {type(node[last]).__name__}, "
                              f"got {type(value).__name__}")
        node[last] = float(value) if isinstance(node[last], float) else value
    return out


def _need(table: dict, key: str, kind, where: str):
    if key not in table:
        raise CxrkitError(f"recipe: {where} lacks {key!r}")
    if not _same_type(kind(), table[key]):
        raise CxrkitError(f"recipe: {where}.{key} must be {kind.__name__}")
    return table[key]


def select_stages(recipe: dict, names: list[str]) -> dict:
    """A copy of ``recipe`` with exactly the stages ``names`` enabled (``--models``)."""
    unknown = [n for n in names if n not in recipe["stages"]]
    if unknown:
        raise CxrkitError(f"unknown stage(s) {', '.join(unknown)}; the recipe has "
                          f"{', '.join(recipe['stages'])}")
    out = copy.deepcopy(recipe)
    for name, stage in out["stages"].items():
        stage["enabled"] = name in names
    return out


def without_enabled(recipe: dict) -> dict:
    """The recipe minus the stages' ``enabled`` flags (what a resumed run must match)."""
    out = copy.deepcopy(recipe)
    for stage in out.get("stages", {}).values():
        stage.pop("enabled", None)
    return out


def validate(recipe: dict) -> None:
    """Checks the fields the engine reads; raises CxrkitError naming the first problem."""
    for section in ("data", "training", "parts", "stages"):
        _need(recipe, section, dict, "recipe")
    training = recipe["training"]
    for key in ("learning_rate", "epochs", "early_stopping_patience", "reduce_lr_patience",
                "reduce_lr_factor"):
        _need(training, key, float if key in ("learning_rate", "reduce_lr_factor") else int,
              "training")
    _need(recipe["data"], "batch_size", int, "data")
    for name, part in recipe["parts"].items():
        builder = _need(part, "builder", str, f"parts.{name}")
        if builder not in BUILDERS:
            raise CxrkitError(f"recipe: parts.{name}.builder {builder!r} is not one of "
                              f"{', '.join(BUILDERS)}")
    for name, stage in recipe["stages"].items():
        where = f"stages.{name}"
        task = _need(stage, "task", str, where)
        if task not in TASKS:
            raise CxrkitError(f"recipe: {where}.task {task!r} is not one of {', '.join(TASKS)}")
        roles = _need(stage, "parts", dict, where)
        for role in TASKS[task]:
            if role not in roles:
                raise CxrkitError(f"recipe: {where}.parts needs the role {role!r}")
        for role, part in roles.items():
            if part not in recipe["parts"]:
                raise CxrkitError(f"recipe: {where}.parts.{role} names unknown part {part!r}")
        for part in _need(stage, "trainable", list, where):
            if part not in roles.values():
                raise CxrkitError(f"recipe: {where}.trainable names {part!r}, which the stage "
                                  "does not use")
        for output, loss in _need(stage, "loss", dict, where).items():
            if loss not in LOSSES:
                raise CxrkitError(f"recipe: {where}.loss.{output} {loss!r} is not one of "
                                  f"{', '.join(LOSSES)}")
        for key, example in STAGE_OPTIONAL.items():
            if key in stage and not _same_type(example, stage[key]):
                raise CxrkitError(f"recipe: {where}.{key} must be {type(example).__name__}")
        if stage.get("optimizer", "adam") not in OPTIMIZERS:
            raise CxrkitError(f"recipe: {where}.optimizer must be one of {', '.join(OPTIMIZERS)}")
        if stage.get("batches", "shuffled") not in ("shuffled", "balanced"):
            raise CxrkitError(f"recipe: {where}.batches must be 'shuffled' or 'balanced'")
        if stage.get("evaluate", "none") not in EVALUATIONS:
            raise CxrkitError(f"recipe: {where}.evaluate must be one of "
                              f"{', '.join(EVALUATIONS)}")
    if recipe["training"].get("optimizer", "adam") not in OPTIMIZERS:
        raise CxrkitError(f"recipe: training.optimizer must be one of {', '.join(OPTIMIZERS)}")
    report = recipe.get("report", {})
    if report.get("layout", "mlmi2024") not in ("mlmi2024", "mlmi2023"):
        raise CxrkitError("recipe: report.layout must be 'mlmi2024' or 'mlmi2023'")
    for key in ("classification_reference", "saliency_reference"):
        if key in report and report[key] not in recipe["stages"]:
            raise CxrkitError(f"recipe: report.{key} names unknown stage {report[key]!r}")
