"""Recipe files: loading, ``extends``, ``--set`` overrides, and resolving to a typed recipe.

A recipe is a TOML file (the shipped ones are package data in ``cxrkit/recipes/toml/``).
Tables nest; ``[stages.<name>]`` tables run in the order they are written. A recipe may start
with ``extends = "other.toml"`` (a path relative to itself): the other recipe is loaded first
and this one's tables are merged over it, key by key, so a profile only lists what it changes.
``demo_profile`` names the profile that ``cxrkit recipe run`` uses when no ``--data`` is
given.

:func:`apply_overrides` takes ``KEY=VALUE`` strings (``stages.saliency.epochs=5``); the value
is read as TOML (``5``, ``1e-3``, ``true``, ``[8, 16]``, ``"text"``; a bare word is a string).
A key that is neither in the recipe nor a field of the format (:mod:`cxrkit.recipes.schema`),
or a value of another type, is an error before anything runs. :func:`resolve` returns the
checked, typed :class:`~cxrkit.recipes.schema.Recipe`.
"""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path

from cxrkit.errors import CxrkitError, InputError

RECIPES_DIR = Path(__file__).resolve().parent / "toml"  # shipped as package data


def find_recipe(name_or_path: str | os.PathLike) -> Path:
    """A shipped recipe's name (``mlmi2024``), or a path to a ``.toml`` file."""
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
    """Names of the shipped recipes."""
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


def _field_type(recipe: dict, parts: list[str]):
    """The type a key may take where the recipe leaves it out (None: no such field)."""
    from cxrkit.recipes import schema
    from cxrkit.recipes.parts import BUILDERS

    if len(parts) == 3 and parts[0] == "parts":
        builder = recipe["parts"][parts[1]].get("builder")
        return BUILDERS[builder].options.get(parts[2]) if builder in BUILDERS else None
    return schema.field_type(parts)


def apply_overrides(recipe: dict, overrides: list[str]) -> dict:
    """A copy of ``recipe`` with each ``KEY=VALUE`` applied (see the module docstring)."""
    from cxrkit.recipes.schema import conforms, type_name

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
        kind = type(node[last]) if last in node else _field_type(out, parts)
        if kind is None:
            raise CxrkitError(f"--set {key}: unknown key; {'.'.join(parts[:-1]) or 'the recipe'}"
                              f" has {', '.join(sorted(node))}")
        value = _parse_value(text)
        if not conforms(value, kind):
            raise CxrkitError(f"--set {key}={text}: expected {type_name(kind)}, "
                              f"got {type(value).__name__}")
        node[last] = float(value) if kind is float else value
    return out


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


def resolve(name_or_path, overrides=(), *, demo: bool = False, stages=None):
    """The recipe as it will run, typed and checked: its demo profile if ``demo``, overrides
    applied, only ``stages`` enabled when given."""
    from cxrkit.recipes.schema import parse

    recipe = load_recipe(name_or_path)
    if demo and recipe.get("demo_profile"):
        recipe = load_recipe(Path(recipe["source"]).parent / recipe["demo_profile"])
    recipe = apply_overrides(recipe, list(overrides))
    if stages:
        recipe = select_stages(recipe, list(stages))
    return parse(recipe)
