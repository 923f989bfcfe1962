"""Declarative experiments (``recipes/*.toml``) and the engine that runs them.

:func:`run_recipe` is what ``cxrkit recipe run`` calls: resolve the recipe (its demo profile
when no data is given), generate and convert the phantom data for a demo, train the stages
(:mod:`cxrkit.recipes.engine`), evaluate on the test split, save the final model with its
model card, export it for TensorFlow Serving when the recipe has an ``[export]`` table
(:mod:`cxrkit.serving`), and write the report (:mod:`cxrkit.recipes.report`). See
``docs/recipes.md``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cxrkit.errors import CxrkitError
from cxrkit.recipes.config import (
    apply_overrides,
    find_recipe,
    list_recipes,
    load_recipe,
    select_stages,
    validate,
    without_enabled,
)

__all__ = ["apply_overrides", "find_recipe", "list_recipes", "load_recipe", "resolve",
           "run_recipe", "validate"]


def resolve(name_or_path, overrides=(), *, demo: bool = False, stages=None) -> dict:
    """The recipe as it will run: its demo profile if ``demo``, overrides applied, only
    ``stages`` enabled when given, validated."""
    recipe = load_recipe(name_or_path)
    if demo and recipe.get("demo_profile"):
        recipe = load_recipe(Path(recipe["source"]).parent / recipe["demo_profile"])
    recipe = apply_overrides(recipe, list(overrides))
    if stages:
        recipe = select_stages(recipe, list(stages))
    validate(recipe)
    return recipe


def demo_note(recipe: dict) -> str:
    real = {"siim-acr": ("SIIM-ACR", "siim-acr --images DIR --rle CSV"),
            "egd-cxr": ("EGD-CXR", "egd-cxr ...")}[recipe["data"].get("dataset", "egd-cxr")]
    return (f"This run used SYNTHETIC phantom data (the {recipe['name']} demo profile), not "
            f"real X-rays: its numbers say nothing about the study. For the real {real[0]}, "
            f"convert it with `cxrkit data {real[1]} --out RECORDS_DIR` and pass "
            "`--data RECORDS_DIR` (see docs/recipes.md).")


def prepare_demo_data(recipe: dict, folder: Path, echo) -> Path:
    """Generates the phantom set of ``recipe['demo']`` and converts it (reused if present)."""
    demo = recipe["demo"]
    records = folder / "records"
    if (records / "manifest.json").is_file():
        echo(f"demo data: reusing {records}")
        return records
    raw = folder / "raw"
    seed = demo.get("seed", 0)
    if recipe["data"].get("dataset") == "siim-acr":
        from data_prep.phantom.siim_acr import generate_siim_acr
        from data_prep.siim_acr.convert import convert_siim_acr

        echo(f"demo data: generating {demo['images']} phantom SIIM-ACR images in {raw}")
        generate_siim_acr(raw, n=demo["images"], size=demo["size"], seed=seed,
                          show_progress=True)
        convert_siim_acr(raw, raw / "train-rle.csv", records, size=demo["target"],
                         subset=None, split=demo["split"], seed=seed, show_progress=True)
        return records
    from data_prep.egd_cxr.convert import convert_egd_cxr
    from data_prep.phantom.egd_cxr import generate_egd_cxr

    echo(f"demo data: generating {demo['images']} phantom EGD-CXR images in {raw}")
    generate_egd_cxr(raw, n=demo["images"], size=demo["size"], seed=seed, show_progress=True)
    convert_egd_cxr(raw / "master_sheet.csv", raw / "eye_gaze.csv", raw, records,
                    target=tuple(demo["target"]), sigma=demo["sigma"], test=demo["test"],
                    val=demo["val"], seed=seed, show_progress=True)
    return records


def _check_out(out: Path, recipe: dict, resume: bool) -> None:
    saved = out / "run.json"
    if saved.is_file() and not resume:
        raise CxrkitError(f"{out}: already holds a run; pass --resume to continue it or "
                          "choose another --out")
    if resume and saved.is_file():
        before = json.loads(saved.read_text())["recipe"]
        if without_enabled(before) != without_enabled(json.loads(json.dumps(recipe))):
            raise CxrkitError(f"{out}: --resume with a different recipe than the run started "
                              "with (compare run.json); use a new --out. Only the set of "
                              "stages (--models) may change.")


def run_recipe(name_or_path, *, data=None, out=None, overrides=(), stages=None,
               resume: bool = False, strategy: str = "default", echo=print) -> dict:
    """Runs a recipe end to end and returns the metrics document (see the module doc).

    ``stages`` (``--models``) runs only the named stages."""
    recipe = resolve(name_or_path, overrides, demo=data is None, stages=stages)
    note = demo_note(recipe) if data is None else None
    out = Path(out or Path("runs") / recipe["name"])
    if note:
        echo(note)
    _check_out(out, recipe, resume)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_demo_data(recipe, out / "data", echo) if data is None else Path(data)

    import keras

    from cxrkit.inference import ModelCard
    from cxrkit.recipes import engine, tasks
    from cxrkit.recipes.evaluate import evaluate_stage, test_arrays
    from cxrkit.recipes.report import write_report

    if recipe["training"].get("mixed_precision", False):
        keras.mixed_precision.set_global_policy("mixed_float16")
    trace = engine.trace(recipe, data, strategy, sys.argv)
    if resume and (out / "run.json").is_file():  # keep the original, log each resumption
        first = json.loads((out / "run.json").read_text())
        if first["data_manifest_sha256"] != trace["data_manifest_sha256"]:
            raise CxrkitError(f"{data}: the records changed since the run in {out} started "
                              "(manifest checksum differs); use a new --out")
        first.setdefault("resumed", []).append({k: trace[k] for k in (
            "started", "command", "versions")} | {"stages": [
                n for n, st in recipe["stages"].items() if st.get("enabled", True)]})
        trace = first
    (out / "run.json").write_text(json.dumps(trace, indent=2) + "\n")
    echo(f"TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
    run = engine.Run(recipe, data, out, strategy=strategy, resume=resume, echo=echo)
    run.run()

    echo("== evaluating on the test split ==")
    test = test_arrays(data)
    stages = run.enabled_stages()
    results = {name: evaluate_stage(stage, run.parts, test, run.class_names)
               for name, stage in stages.items() if stage.get("evaluate", "none") != "none"}
    final_name = recipe.get("report", {}).get("classification_reference")
    final_name = final_name if final_name in stages else list(stages)[-1]
    final_stage = stages[final_name]
    final_model = tasks.stage_model(final_stage["task"], {
        role: run.parts[part] for role, part in final_stage["parts"].items()})
    final_model.save(out / "model.keras")
    ModelCard(run.manifest["dataset"], run.input_shape[:2], tuple(run.class_names),
              task={"fusion": "mlmi2024", "saliency": "saliency"}.get(final_stage["task"],
                                                                     "classifier")
              ).save(out / "model.keras")
    if recipe.get("export", {}).get("name") and final_name == \
            recipe.get("report", {}).get("classification_reference"):
        from cxrkit.serving import export_model

        folder = export_model(out, recipe["export"]["name"], to=out / "saved_models")
        echo(f"SavedModel for TensorFlow Serving: {folder}")
    if recipe.get("report", {}).get("layout") == "mlmi2023":
        from cxrkit.recipes.report_mlmi2023 import write_report_mlmi2023

        document = write_report_mlmi2023(out, results=results, test=test, recipe=recipe,
                                         demo_note=note, trace=trace)
    else:
        document = write_report(out, results=results, test=test, final_model=final_model,
                                recipe=recipe, class_names=run.class_names, demo_note=note,
                                trace=trace)
    echo(f"report: {out / 'report.md'}; metrics: {out / 'metrics.json'}; "
         f"model: {out / 'model.keras'}")
    if note:
        echo(note)
    return document
