"""Typed recipes: a resolved recipe dict parsed once into :class:`Recipe` and its parts.

A recipe file is merged (``extends``) and overridden (``--set``) as plain TOML tables
(:mod:`cxrkit.recipes.config`), then :func:`parse` checks it and returns frozen dataclasses.
Their field defaults are the only defaults of the recipe format; a stage's ``epochs``,
``learning_rate``, ``optimizer``, ``run_eagerly`` and ``batch_size`` default to the recipe's
``[training]`` / ``[data]`` values (:data:`INHERITED`) and are resolved here, so the engine
reads concrete values. Names of tasks, losses, part builders, evaluations and report layouts
are checked against their registries (:mod:`cxrkit.recipes.registry`), and a part's options
against its builder's keyword arguments.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field

from cxrkit.errors import CxrkitError


@dataclass(frozen=True)
class Data:
    """``[data]``: which records the recipe needs and how they are batched."""

    dataset: str
    batch_size: int
    augment: bool = False


@dataclass(frozen=True)
class Training:
    """``[training]``: optimiser and schedule; a patience of 0 turns its callback off."""

    learning_rate: float
    epochs: int
    optimizer: str = "adam"
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    momentum: float = 0.0
    early_stopping_patience: int = 0
    reduce_lr_patience: int = 0
    reduce_lr_factor: float = 0.1
    min_learning_rate: float = 0.0
    reload_best_on_reduce: bool = False  # the 2024 authors' code: back to the best weights
    run_eagerly: bool = False
    jit_compile: bool = False
    mixed_precision: bool = False
    grappler: bool = True  # TensorFlow's graph optimiser on every traced step
    checkpoint: bool = True  # every epoch, so that --resume continues inside a stage
    cache_frozen: bool = False  # frozen parts' outputs computed once per stage (frozen_cache)
    side_process: bool = False  # independent stages trained in a second process


@dataclass(frozen=True)
class Part:
    """``[parts.<name>]``: a model built by a registered builder with its options."""

    name: str
    builder: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """``[stages.<name>]``: what one stage trains, on what, with which losses."""

    name: str
    task: str
    parts: dict[str, str]
    trainable: tuple[str, ...]
    loss: dict[str, str]
    epochs: int
    learning_rate: float
    optimizer: str
    run_eagerly: bool
    batch_size: int
    label: str
    enabled: bool = True
    batches: str = "shuffled"
    margin: float = 1.0
    triplet_strategy: str = "all"
    triplet_reduction: str = "sum"  # over the batch's triplets: "sum" (authors' code), "mean"
    evaluate: str = "none"
    precise_bn_batches: int = 0
    augmentation: str = "recipe"  # "recipe": data.augment's; or one of the reader's modes


# stage field -> (section, key) it takes when the stage leaves it out
INHERITED = {"epochs": ("training", "epochs"), "learning_rate": ("training", "learning_rate"),
             "optimizer": ("training", "optimizer"), "run_eagerly": ("training", "run_eagerly"),
             "batch_size": ("data", "batch_size")}
OPTIMIZERS = ("adam", "adamw", "sgd")
BATCHES = ("shuffled", "balanced")
TRIPLET_STRATEGIES = ("all", "hard")
AUGMENTATIONS = ("recipe", "none", "mlmi2023", "gazegnn")  # cxrkit.data.reader's, + "recipe"
TRIPLET_REDUCTIONS = ("sum", "mean")


@dataclass(frozen=True)
class Export:
    """``[export]``: the SavedModel name of the final model ("" for no export)."""

    name: str = ""


@dataclass(frozen=True)
class Report:
    """``[report]``: the study layout and the reference stages of its tables ("" for none);
    the stage whose Grad-CAM the report shows (``gradcam_stage``, on its declared target or
    ``gradcam_layer``) and the saliency stages that get a column in the example figure."""

    layout: str
    classification_reference: str = ""
    saliency_reference: str = ""
    gradcam_stage: str = ""
    gradcam_layer: str = ""
    figure_saliency: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    """A whole recipe, checked (see the module docstring)."""

    name: str
    data: Data
    training: Training
    parts: dict[str, Part]
    stages: dict[str, Stage]
    report: Report
    export: Export = Export()
    description: str = ""
    seed: int = 0
    source: str = ""
    demo_profile: str = ""
    demo: dict = field(default_factory=dict)

    def enabled_stages(self) -> dict[str, Stage]:
        return {n: s for n, s in self.stages.items() if s.enabled}

    def final_stage(self) -> str:
        """The stage whose model is the run's (``model.keras``, the SavedModel): ``[report]
        classification_reference`` when it is enabled, else the last enabled stage."""
        stages = self.enabled_stages()
        reference = self.report.classification_reference
        return reference if reference in stages else list(stages)[-1]

    def to_dict(self) -> dict:
        """The resolved recipe as plain tables (``run.json``, ``cxrkit recipe show``)."""
        out = dataclasses.asdict(self)
        out["parts"] = {n: {"builder": p.builder, **p.options} for n, p in self.parts.items()}
        for stage in out["stages"].values():
            stage.pop("name")
            stage["trainable"] = list(stage["trainable"])
        return out


SECTIONS = {"data": Data, "training": Training, "report": Report, "export": Export}


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        return "list"
    return (origin or hint).__name__


def conforms(value, hint) -> bool:
    """Whether a TOML value fits a field type (an int fits a float field)."""
    origin = typing.get_origin(hint)
    if hint is bool or isinstance(value, bool):
        return hint is bool and isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float)
    if origin in (tuple, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return isinstance(value, origin or hint)


def field_type(path: list[str]):
    """The type of the recipe field at ``path`` (e.g. ``["stages", "x", "epochs"]``), or None
    when the format has no such field. Part options are typed by their builder's defaults."""
    if len(path) == 2 and path[0] in SECTIONS:
        return _hints(SECTIONS[path[0]]).get(path[1])
    if len(path) == 3 and path[0] == "stages" and path[2] != "name":
        return _hints(Stage).get(path[2])
    return None


def _table(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise CxrkitError(f"recipe: {where} lacks the table {key!r}" if value is None else
                          f"recipe: {where}.{key} must be a table")
    return value


def _fields(cls, table: dict, where: str, *, skip=(), supplied: dict | None = None) -> dict:
    """``table`` checked against ``cls``'s fields: unknown keys, types, required keys."""
    hints = {k: v for k, v in _hints(cls).items() if k not in skip}
    unknown = sorted(set(table) - set(hints))
    if unknown:
        raise CxrkitError(f"recipe: {where} has unknown key(s) {', '.join(unknown)}; it takes "
                          f"{', '.join(hints)}")
    values = dict(supplied or {})
    for key, value in table.items():
        if not conforms(value, hints[key]):
            raise CxrkitError(f"recipe: {where}.{key} must be {type_name(hints[key])}")
        values[key] = float(value) if hints[key] is float else value
    required = [f.name for f in dataclasses.fields(cls) if f.name in hints
                and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in values]
    if missing:
        raise CxrkitError(f"recipe: {where} lacks {', '.join(repr(m) for m in missing)}")
    return values


def _choice(value: str, allowed, where: str) -> None:
    if value not in allowed:
        raise CxrkitError(f"recipe: {where} must be one of {', '.join(allowed)}, not {value!r}")


def _positive(value: int | float, where: str) -> None:
    if not 0 < value < math.inf:
        raise CxrkitError(f"recipe: {where} must be positive, got {value}")


def _within(value: int | float, low: float, high: float, where: str, what: str) -> None:
    """``low <= value < high`` (NaN fails), else the recipe error saying ``what``."""
    if not low <= value < high:
        raise CxrkitError(f"recipe: {where} must be {what}, got {value}")


def _stage(name: str, table: dict, raw: dict, parts: dict[str, Part]) -> Stage:
    from cxrkit.recipes.evaluate import EVALUATIONS
    from cxrkit.recipes.losses import LOSSES
    from cxrkit.recipes.tasks import TASKS

    where = f"stages.{name}"
    inherited = {k: raw[section][key] for k, (section, key) in INHERITED.items()
                 if k not in table}
    values = _fields(Stage, table, where, skip=("name",),
                     supplied={"label": name, **inherited})
    values["trainable"] = tuple(values["trainable"])
    stage = Stage(name=name, **values)
    task = TASKS.lookup(stage.task, f"{where}.task")
    for role in task.roles:
        if role not in stage.parts:
            raise CxrkitError(f"recipe: {where}.parts needs the role {role!r}")
    for role, part in stage.parts.items():
        if role not in (*task.roles, *task.optional_roles):
            raise CxrkitError(f"recipe: {where}.parts: task {stage.task!r} has no role {role!r}")
        if part not in parts:
            raise CxrkitError(f"recipe: {where}.parts.{role} names unknown part {part!r}")
    for part in stage.trainable:
        if part not in stage.parts.values():
            raise CxrkitError(f"recipe: {where}.trainable names {part!r}, which the stage "
                              "does not use")
    if not stage.loss:
        raise CxrkitError(f"recipe: {where}.loss names no output")
    for output, loss in stage.loss.items():
        LOSSES.lookup(loss, f"{where}.loss.{output}")
    EVALUATIONS.lookup(stage.evaluate, f"{where}.evaluate")
    _choice(stage.optimizer, OPTIMIZERS, f"{where}.optimizer")
    _choice(stage.batches, BATCHES, f"{where}.batches")
    _choice(stage.triplet_strategy, TRIPLET_STRATEGIES, f"{where}.triplet_strategy")
    _choice(stage.augmentation, AUGMENTATIONS, f"{where}.augmentation")
    _choice(stage.triplet_reduction, TRIPLET_REDUCTIONS, f"{where}.triplet_reduction")
    for key in ("epochs", "learning_rate", "batch_size", "margin"):
        _positive(getattr(stage, key), f"{where}.{key}")
    if stage.precise_bn_batches < 0:
        raise CxrkitError(f"recipe: {where}.precise_bn_batches must not be negative")
    return stage


def parse(raw: dict) -> Recipe:
    """Checks a resolved recipe dict and returns the typed :class:`Recipe`.

    Raises:
        CxrkitError: naming the first problem (``recipe: stages.x.task 'y' is not one of …``).
    """
    from cxrkit.recipes.parts import BUILDERS, check_options
    from cxrkit.recipes.reports import REPORTS

    top = {k: v for k, v in raw.items() if k not in ("data", "training", "parts", "stages",
                                                     "report", "export")}
    header = _fields(Recipe, top, "recipe", skip=("data", "training", "parts", "stages",
                                                  "report", "export"))
    data = Data(**_fields(Data, _table(raw, "data", "recipe"), "data"))
    training = Training(**_fields(Training, _table(raw, "training", "recipe"), "training"))
    _positive(data.batch_size, "data.batch_size")
    _positive(training.epochs, "training.epochs")
    _positive(training.learning_rate, "training.learning_rate")
    for key in ("early_stopping_patience", "reduce_lr_patience"):
        _within(getattr(training, key), 0, math.inf, f"training.{key}", "0 (off) or more")
    for key in ("min_learning_rate", "momentum"):
        _within(getattr(training, key), 0, math.inf, f"training.{key}", "finite, 0 or more")
    for key in ("beta_1", "beta_2"):
        _within(getattr(training, key), 0, 1, f"training.{key}", "in [0, 1)")
    _positive(training.epsilon, "training.epsilon")
    if not 0 < training.reduce_lr_factor < 1:
        raise CxrkitError("recipe: training.reduce_lr_factor must be in (0, 1), got "
                          f"{training.reduce_lr_factor}")
    _choice(training.optimizer, OPTIMIZERS, "training.optimizer")
    parts = {}
    tables = _table(raw, "parts", "recipe")
    for name, table in tables.items():
        if not isinstance(table, dict) or not isinstance(table.get("builder"), str):
            raise CxrkitError(f"recipe: parts.{name} needs a builder name")
        options = {k: v for k, v in table.items() if k != "builder"}
        BUILDERS.lookup(table["builder"], f"parts.{name}.builder")
        check_options(table["builder"], options, f"parts.{name}", tables)
        parts[name] = Part(name, table["builder"], options)
    resolved = {"data": dataclasses.asdict(data), "training": dataclasses.asdict(training)}
    stages = {}
    for name, table in _table(raw, "stages", "recipe").items():
        if not isinstance(table, dict):
            raise CxrkitError(f"recipe: stages.{name} must be a table")
        stages[name] = _stage(name, table, resolved, parts)
    if not stages:
        raise CxrkitError("recipe: no stages")
    report = Report(**_fields(Report, _table(raw, "report", "recipe"), "report"))
    report = dataclasses.replace(report, figure_saliency=tuple(report.figure_saliency))
    REPORTS.lookup(report.layout, "report.layout")
    for key in ("classification_reference", "saliency_reference", "gradcam_stage"):
        value = getattr(report, key)
        if value and value not in stages:
            raise CxrkitError(f"recipe: report.{key} names unknown stage {value!r}")
    for value in report.figure_saliency:
        if value not in stages:
            raise CxrkitError(f"recipe: report.figure_saliency names unknown stage {value!r}")
    export = Export(**_fields(Export, raw.get("export", {}), "export"))
    return Recipe(data=data, training=training, parts=parts, stages=stages, report=report,
                  export=export, **header)
