"""Training throughput of every stage of both recipes at the studies' input sizes, projected.

Each stage's training model is built exactly as ``cxrkit recipe run`` builds it (its parts by
the recipe's builders, random weights; the stage's task, trainable parts, losses and
optimiser) at the study input size — 640 x 512 for mlmi2024 (GazeGNN resizes to 224
inside), 224 x 224 for mlmi2023 — and fed synthetic batches shaped like the records. It runs
compiled ``train_on_batch`` steps (after a warm-up step that traces) in its own process, so
its peak memory is its own. The study batch size is measured when it fits under
``--max-batch`` (CPU memory); otherwise the largest that does, and examples per second are
projected from it. Prints a Markdown table: forward+backward examples per second, peak host
memory, the steps of the full recipe (epochs x ceil(training images / batch); EGD-CXR: 885
training images, SIIM-ACR: 3,338) and the projected CPU wall time of those steps (validation
passes not included). With a GPU it adds rows with mixed precision and XLA.

    python benchmarks/bench_train.py [--recipes mlmi2024,mlmi2023] [--max-batch 4] [--steps 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

TRAIN_IMAGES = {"mlmi2024": 885, "mlmi2023": 3338}  # the converters' default training splits
INPUT = {"mlmi2024": (640, 512), "mlmi2023": (224, 224)}


def _recipe(name: str):
    from cxrkit.recipes import resolve

    recipe = resolve(name)
    parts = {n: dataclasses.replace(p, options={**p.options, "weights": "none"})
             if "weights" in p.options else p for n, p in recipe.parts.items()}
    return dataclasses.replace(recipe, parts=parts)


def _batch(recipe_name: str, stage, batch: int, classes: int) -> tuple:
    """(inputs, targets) of one synthetic batch, through the engine's own mapping."""
    from cxrkit.recipes import losses
    from cxrkit.recipes.tasks import TASKS

    rows, cols = INPUT[recipe_name]
    rng = np.random.default_rng(0)
    heat = rng.random((batch, rows, cols, 1), dtype="float32")
    example = {"image": rng.random((batch, rows, cols, 1), dtype="float32"),
               "heatmap": heat / heat.sum(axis=(1, 2, 3), keepdims=True),
               "mask": (rng.random((batch, rows, cols, 1)) > 0.9).astype("float32"),
               "gaze_dwell": rng.random((batch, rows, cols, 1), dtype="float32"),
               "label": np.arange(batch, dtype="int32") % classes}
    return TASKS[stage.task].model_inputs(example), losses.targets(stage, example)


def one(recipe_name: str, stage_name: str, batch: int, steps: int, mixed: bool,
        xla: bool) -> dict:
    import keras

    from cxrkit.models import set_trainable
    from cxrkit.recipes import losses
    from cxrkit.recipes.engine import make_optimizer
    from cxrkit.recipes.parts import build_parts
    from cxrkit.recipes.tasks import stage_model

    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    recipe = _recipe(recipe_name)
    stage = recipe.stages[stage_name]
    classes = 3 if recipe_name == "mlmi2024" else 2
    keras.utils.set_random_seed(0)
    parts = build_parts(list(dict.fromkeys(stage.parts.values())), recipe.parts,
                        (*INPUT[recipe_name], 1), classes)
    set_trainable(parts, {p: p in stage.trainable for p in set(stage.parts.values())})
    model = losses.training_view(stage_model(stage, parts), stage)
    model.compile(make_optimizer(stage, recipe.training), loss=losses.keras_losses(stage),
                  jit_compile=xla)
    x, y = _batch(recipe_name, stage, batch, classes)
    started = time.perf_counter()
    model.train_on_batch(x, y)  # traces
    trace = time.perf_counter() - started
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - started)
    return {"step": min(times), "trace": trace,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights))}


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="mlmi2024,mlmi2023")
    parser.add_argument("--stages", default="", help="only these stages (comma-separated)")
    parser.add_argument("--max-batch", type=int, default=4,
                        help="largest batch measured at 640 x 512 (CPU memory) [4]")
    parser.add_argument("--max-batch-224", type=int, default=16,
                        help="largest batch measured at 224 x 224 [16]")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after the warm-up")
    parser.add_argument("--one", nargs=5, metavar=("RECIPE", "STAGE", "BATCH", "MIXED", "XLA"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        recipe, stage, batch, mixed, xla = args.one
        print(json.dumps(one(recipe, stage, int(batch), args.steps, mixed == "1",
                             xla == "1")))
        return
    import tensorflow as tf

    gpu = bool(tf.config.list_physical_devices("GPU"))
    variants = [("fp32", False, False)] + ([("mixed", True, False), ("mixed+XLA", True, True)]
                                           if gpu else [])
    device = "GPU" if gpu else f"CPU ({os.cpu_count()} cores)"
    print(f"{time.strftime('%Y-%m-%d')}, {device}; best of {args.steps} steps after a "
          "tracing step; random weights")
    columns = ["recipe", "stage", "input", "study batch", "measured batch", "precision",
               "examples/s", "step (s)", "first step (s)", "peak MiB", "epochs", "steps",
               "projected"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    only = {s for s in args.stages.split(",") if s}
    for recipe_name in args.recipes.split(","):
        recipe = _recipe(recipe_name)
        rows, cols = INPUT[recipe_name]
        cap = args.max_batch if rows * cols > 224 * 224 else args.max_batch_224
        total = 0.0
        for name, stage in recipe.stages.items():
            if only and name not in only:
                continue
            measured = min(stage.batch_size, cap)
            steps = stage.epochs * math.ceil(TRAIN_IMAGES[recipe_name] / stage.batch_size)
            for label, mixed, xla in variants:
                command = [sys.executable, __file__, "--one", recipe_name, name, str(measured),
                           "1" if mixed else "0", "1" if xla else "0",
                           "--steps", str(args.steps)]
                result = subprocess.run(command, capture_output=True, text=True,
                                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
                lines = [x for x in result.stdout.splitlines() if x.startswith("{")]
                if result.returncode or not lines:
                    why = (result.stderr.strip().splitlines() or ["killed (memory?)"])[-1]
                    print(f"| {recipe_name} | {name} | {rows} x {cols} | {stage.batch_size} | "
                          f"{measured} | {label} | failed: {why[:120]} |||||||", flush=True)
                    continue
                m = json.loads(lines[-1])
                rate = measured / m["step"]
                projected = steps * stage.batch_size / rate
                if label == "fp32":
                    total += projected
                print(f"| {recipe_name} | {name} | {rows} x {cols} | {stage.batch_size} | "
                      f"{measured} | {label} | {rate:.2f} | {m['step']:.2f} | "
                      f"{m['trace']:.1f} | {m['peak_mib']:,.0f} | {stage.epochs} | {steps:,} | "
                      f"{_hours(projected)} |", flush=True)
        print(f"| {recipe_name} | **all stages** |||||||||| | **{_hours(total)}** |",
              flush=True)


if __name__ == "__main__":
    main()
