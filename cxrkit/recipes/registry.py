"""Name -> component tables that a recipe's vocabulary is checked against and dispatched by.

Each vocabulary has one :class:`Registry`, filled where its components are defined:

- tasks (``[stages.X] task``): :data:`cxrkit.recipes.tasks.TASKS`;
- losses (``[stages.X] loss``): :data:`cxrkit.recipes.losses.LOSSES`;
- part builders (``[parts.X] builder``): :data:`cxrkit.recipes.parts.BUILDERS`;
- evaluations (``[stages.X] evaluate``): :data:`cxrkit.recipes.evaluate.EVALUATIONS`;
- report layouts (``[report] layout``): :data:`cxrkit.recipes.reports.REPORTS`.

Adding one is one ``@REGISTRY.register("name", ...)`` in that file: validation
(:mod:`cxrkit.recipes.schema`) and the engine read the same table. The modules that register
import TensorFlow only inside their functions, so validating a recipe stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable

from cxrkit.errors import CxrkitError


class Registry(dict):
    """A dict of named entries with a decorator to add them and a lookup that explains misses.

    Args:
        kind: what the names name, for messages (``"task"``).
        entry: a callable that makes the stored entry from the decorated function and the
            keyword arguments of :meth:`register` (default: the function itself).
    """

    def __init__(self, kind: str, entry: Callable | None = None):
        super().__init__()
        self.kind = kind
        self.entry = entry

    def register(self, name: str, **meta):
        def add(function):
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = self.entry(function, **meta) if self.entry else function
            return function
        return add

    def lookup(self, name: str, where: str):
        """The entry ``name``; :class:`CxrkitError` naming ``where`` and the known names."""
        if name not in self:
            raise CxrkitError(f"recipe: {where} {name!r} is not one of {', '.join(self)}")
        return self[name]
