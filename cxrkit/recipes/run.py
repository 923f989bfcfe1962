"""``cxrkit recipe run`` end to end, on a records folder: train, evaluate, save, export, report.

:func:`run_recipe` takes a resolved :class:`~cxrkit.recipes.schema.Recipe` and a folder of
converted records (the command line makes the demo records first when no ``--data`` is given;
this package never generates data). It checks the run folder (:func:`check_out`), records the
trace (``run.json``), trains the enabled stages (:mod:`cxrkit.recipes.engine`), evaluates them
on the test split (:mod:`cxrkit.recipes.evaluate`; the stages of a side process are evaluated
there, :mod:`cxrkit.recipes.side_process`), saves the final model with its model card
(and a card beside each saved part that is a stage's whole model, ``parts/gazegnn.keras``
for one, so ``cxrkit export RUN/parts/gazegnn.keras`` works),
exports it for TensorFlow Serving when the recipe has an ``[export]`` name, and writes the
report of the recipe's layout (:mod:`cxrkit.recipes.reports`).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from cxrkit.errors import CxrkitError
from cxrkit.recipes.config import without_enabled
from cxrkit.recipes.schema import Recipe


def demo_note(recipe: Recipe) -> str:
    """The warning a demo run prints first and last, and its report repeats."""
    return (f"This run used SYNTHETIC phantom data (the {recipe.name} demo profile), not "
            f"real X-rays: its numbers say nothing about the study. For the real data, "
            f"convert it with `cxrkit data {recipe.data.dataset} ... --out RECORDS_DIR` and "
            "pass `--data RECORDS_DIR` (see docs/recipes.md).")


def has_progress(out: Path) -> bool:
    """True when a run in ``out`` finished a stage or checkpointed an epoch of one."""
    stages = out / "stages"
    return any(stages.glob("*/done.json")) or any(stages.glob("*/backup/*"))


LEFTOVERS = ("run.json", "stages", "parts", "tensorboard", "side")


def check_out(out: Path, recipe: Recipe, resume: bool) -> str | None:
    """Refuses a run folder that holds another run, or a resume with a changed recipe.

    A run that stopped before it finished or checkpointed anything (bad records, a missing
    weights file) holds nothing worth resuming: its leftovers are cleared and the run starts
    afresh. Returns a line that says so, else ``None``.
    """
    saved = out / "run.json"
    if saved.is_file() and not resume:
        if has_progress(out):
            raise CxrkitError(f"{out}: already holds a run; pass --resume to continue it or "
                              "choose another --out")
        for name in LEFTOVERS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        return (f"{out}: the run there stopped before any stage finished; starting it "
                "afresh")
    if resume and saved.is_file():
        before = json.loads(saved.read_text())["recipe"]
        if without_enabled(before) != without_enabled(json.loads(json.dumps(
                recipe.to_dict()))):
            raise CxrkitError(f"{out}: --resume with a different recipe than the run started "
                              "with (compare run.json); use a new --out. Only the set of "
                              "stages (--models) may change.")
    return None


def _write_trace(out: Path, recipe: Recipe, data: Path, strategy: str, resume: bool) -> dict:
    from cxrkit.recipes import engine

    trace = engine.trace(recipe, data, strategy, sys.argv)
    if resume and (out / "run.json").is_file():  # keep the original, log each resumption
        first = json.loads((out / "run.json").read_text())
        if first["data_manifest_sha256"] != trace["data_manifest_sha256"]:
            raise CxrkitError(f"{data}: the records changed since the run in {out} started "
                              "(manifest checksum differs); use a new --out")
        first.setdefault("resumed", []).append({k: trace[k] for k in (
            "started", "command", "versions")} | {"stages": list(recipe.enabled_stages())})
        trace = first
    (out / "run.json").write_text(json.dumps(trace, indent=2) + "\n")
    return trace


def run_recipe(recipe: Recipe, data: str | Path, *, out: str | Path, resume: bool = False,
               strategy: str = "default", demo: bool = False, echo=print) -> dict:
    """Runs ``recipe`` on the records in ``data`` into ``out``; returns the metrics document.

    ``demo`` marks a run on phantom data: its report and its closing line say so (the
    command line also says so before it generates the data). Under ``multi-worker`` a worker
    that is not the chief trains its share and returns ``{}``: give it a scratch ``out``
    (the command line does), since everything that stays is the chief's.
    """
    from cxrkit.recipes import engine

    data, out = Path(data), Path(out)
    note = demo_note(recipe) if demo else None
    note_restart = check_out(out, recipe, resume)
    if note_restart:
        echo(note_restart)
    out.mkdir(parents=True, exist_ok=True)
    engine.configure_process(recipe)
    trace = _write_trace(out, recipe, data, strategy, resume)
    run = engine.Run(recipe, data, out, strategy=strategy, resume=resume, echo=echo)
    role = run.role
    if role is None or role.chief:
        echo(f"TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
    run.run()
    try:
        return _evaluate_export_report(run, recipe, data, out, note, trace, echo)
    finally:
        if run.side is not None:
            run.side.stop()


def stage_card(run, stage):
    """The model card of ``stage``'s model in ``run``: its preprocessing, classes and task."""
    from cxrkit.card import ModelCard
    from cxrkit.recipes.tasks import TASKS

    return ModelCard(run.preprocessing, tuple(run.class_names), TASKS[stage.task].card_task)


def save_part_cards(run, stage, model) -> None:
    """A model card beside each of ``stage``'s part files that is the stage's whole
    ``model`` (``parts/gazegnn.keras``), so ``cxrkit export`` takes that file as it is."""
    from cxrkit.card import card_path
    from cxrkit.recipes.parts import part_path

    for part in stage.parts.values():
        if run.parts[part] is model and part_path(run.out, part).is_file():
            stage_card(run, stage).save(card_path(part_path(run.out, part)))


def _evaluate_export_report(run, recipe: Recipe, data: Path, out: Path, note, trace: dict,
                            echo) -> dict:
    """What follows the stages: test-split evaluation, model files and cards, the SavedModel
    (made here, or by the side process while this one evaluates and reports), the report."""
    from cxrkit.card import card_path
    from cxrkit.recipes.evaluate import evaluate_stage, load_test_split
    from cxrkit.recipes.parts import save_part
    from cxrkit.recipes.reports import REPORTS
    from cxrkit.recipes.side_process import evaluation_of, exported_stage, loaded_back
    from cxrkit.recipes.tasks import stage_model

    role = run.role
    if role is not None:
        if not role.chief:
            echo(f"worker {role.index}: training done; the chief evaluates, reports and "
                 "exports")
            return {}
        run.detach_parts()

    echo("== evaluating on the test split ==")
    test = load_test_split(data)
    stages = recipe.enabled_stages()
    # the side process evaluated the stages it trained; of those, only the ones this process
    # loaded back (the final model, the report's Grad-CAM stage) have models here
    models = {name: stage_model(stage, run.parts) for name, stage in stages.items()
              if name not in run.aside or name in loaded_back(recipe, run.aside)}
    results = {name: evaluation_of(out, name) if name in run.aside else
               evaluate_stage(stage, models[name], test, run.class_names)
               for name, stage in stages.items() if stage.evaluate != "none"}
    final = stages[recipe.final_stage()]
    final_model = models[final.name]
    save_part(final_model, out / "model.keras")  # whole or not at all, as a part is
    card = stage_card(run, final)
    card.save(card_path(out / "model.keras"))
    for name, model in models.items():
        if name not in run.aside:  # the side process wrote its own stages' cards
            save_part_cards(run, stages[name], model)
    exported = exported_stage(recipe) is not None  # the final model, when [export] names it
    if exported and run.side is None:
        from cxrkit.serving.export import export_loaded

        folder = export_loaded(final_model, card, recipe.export.name, to=out / "saved_models")
        echo(f"SavedModel for TensorFlow Serving: {folder}")
    document = REPORTS[recipe.report.layout](
        out, results=results, test=test, final_model=final_model, recipe=recipe,
        stage_models=models,
        class_names=run.class_names, demo_note=note, trace=trace)
    if exported and run.side is not None:
        echo(f"SavedModel for TensorFlow Serving: {run.side.wait_export()} (exported by the "
             "side process)")
    echo(f"report: {out / 'report.md'}; metrics: {out / 'metrics.json'}; "
         f"model: {out / 'model.keras'}")
    if note:
        echo(note)
    return document
