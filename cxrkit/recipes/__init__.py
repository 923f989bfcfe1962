"""Declarative experiments: recipe files, their typed form, and the engine that runs them.

- :mod:`~cxrkit.recipes.config` — TOML loading, ``extends``, ``--set`` overrides,
  :func:`resolve` (name -> checked :class:`~cxrkit.recipes.schema.Recipe`);
- :mod:`~cxrkit.recipes.schema` — the typed recipe and its defaults;
- :mod:`~cxrkit.recipes.registry` and the registries it lists (tasks, losses, part builders,
  evaluations, report layouts);
- :mod:`~cxrkit.recipes.engine` — the stage loop; :mod:`~cxrkit.recipes.run` —
  :func:`run_recipe`, end to end on a records folder.

The shipped recipes are package data (``cxrkit/recipes/toml/``). See ``docs/recipes.md``.
"""

from cxrkit.recipes.config import (
    apply_overrides,
    find_recipe,
    list_recipes,
    load_recipe,
    resolve,
    select_stages,
)
from cxrkit.recipes.run import check_out, demo_note, run_recipe
from cxrkit.recipes.schema import Recipe, parse

__all__ = ["Recipe", "apply_overrides", "check_out", "demo_note", "find_recipe",
           "list_recipes", "load_recipe", "parse", "resolve", "run_recipe", "select_stages"]
