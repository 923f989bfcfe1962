"""The recipe engine: runs a recipe's stages in order, hands trained parts on, resumes.

The engine knows stages, not studies. For each enabled ``[stages.<name>]`` it

1. builds the stage model from its parts (:mod:`cxrkit.recipes.tasks`) and sets ``trainable``
   on each part exactly as the stage lists (frozen parts keep their BatchNorm statistics);
2. trains it with Adam, early stopping and ReduceLROnPlateau on the validation loss (training
   loss when there is no validation split), best weights kept, under the chosen
   ``tf.distribute`` strategy;
3. saves the parts it trained (``stages/<name>/parts/<part>.keras``, also copied to
   ``parts/<part>.keras``, which always holds a part's latest version) and marks itself done
   (``stages/<name>/done.json`` with the checksums of its own part files).

Each stage logs to TensorBoard (``tensorboard/<stage>/``: loss, metrics and learning rate per
epoch, predicted saliency images, HParams) and checkpoints every epoch
(``stages/<name>/backup/``, Keras' BackupAndRestore: weights, optimizer and epoch; removed
when the stage completes, its trained parts being saved then). With
``resume=True`` a done stage whose part files match their checksums is skipped and its parts
are loaded; the interrupted stage continues from its last epoch checkpoint.

Every part is built fresh (in a fixed order, after seeding) before saved weights are loaded,
so a resumed run draws the same initial weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cxrkit.data import load, read_manifest
from cxrkit.errors import CxrkitError
from cxrkit.recipes import tasks
from cxrkit.recipes.callbacks import SaliencyImages, hparams_callback
from cxrkit.recipes.parts import build_part, part_path, publish, save_part
from cxrkit.recipes.precise_bn import recompute_batchnorm
from data_prep.records import sha256_file

STRATEGIES = ("default", "mirrored", "multi-worker")


def make_strategy(kind: str) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (all local GPUs, else all logical CPUs) or
    ``multi-worker`` (``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``)."""
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(cpus)
    if kind == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise CxrkitError(f"unknown strategy {kind!r}; choose from {', '.join(STRATEGIES)}")


class Run:
    """One recipe run in ``out`` (see the module docstring)."""

    def __init__(self, recipe: dict, data: Path, out: Path, *, strategy: str = "default",
                 resume: bool = False, echo=print):
        self.recipe, self.data, self.out = recipe, data, out
        self.resume, self.echo = resume, echo
        self.manifest = read_manifest(data)
        if self.manifest["dataset"] != recipe["data"].get("dataset", self.manifest["dataset"]):
            raise CxrkitError(f"{data}: holds {self.manifest['dataset']} records but the recipe "
                              f"needs {recipe['data']['dataset']}")
        shape = self.manifest["features"]["image"]["shape"]
        self.input_shape = (shape[0], shape[1], 1)
        self.class_names = list(self.manifest["classes"])
        self.strategy_kind, self.strategy = strategy, make_strategy(strategy)
        self.parts: dict[str, keras.Model] = {}

    # --- data -----------------------------------------------------------------------------
    def count(self, split: str) -> int:
        return int(self.manifest["counts"].get(split, {}).get("total", 0))

    def dataset(self, split: str, task: str, loss_spec: dict, *, training: bool,
                balanced: bool = False):
        cfg = self.recipe["data"]
        batch = cfg["batch_size"] * self.strategy.num_replicas_in_sync
        ds = load(self.data, split, batch_size=batch, shuffle=training,
                  augment=training and cfg.get("augment", False),
                  seed=self.recipe.get("seed", 0), balanced=balanced and training)
        return ds.map(lambda ex: (ex["image"], tasks.targets(task, loss_spec, ex)))

    # --- parts ----------------------------------------------------------------------------
    def used_parts(self) -> list[str]:
        names = []
        for stage in self.enabled_stages().values():
            names += [p for p in stage["parts"].values() if p not in names]
        return names

    def enabled_stages(self) -> dict[str, dict]:
        return {n: s for n, s in self.recipe["stages"].items() if s.get("enabled", True)}

    def build_parts(self) -> None:
        keras.utils.set_random_seed(self.recipe.get("seed", 0))
        specs = self.recipe["parts"]
        with self.strategy.scope():
            for name in self.used_parts():
                self.parts[name] = build_part(name, specs[name], specs, self.input_shape,
                                              len(self.class_names))

    # --- stages ---------------------------------------------------------------------------
    def stage_dir(self, name: str) -> Path:
        return self.out / "stages" / name

    def completed(self, name: str) -> bool:
        """True when the stage is done and its saved parts are intact (then loaded)."""
        done = self.stage_dir(name) / "done.json"
        if not (self.resume and done.is_file()):
            return False
        record = json.loads(done.read_text())
        for part, digest in record["parts"].items():
            path = self.stage_dir(name) / "parts" / f"{part}.keras"
            if not path.is_file() or sha256_file(path) != digest:
                self.echo(f"stage {name}: saved part {path} is missing or changed; "
                          "training the stage again")
                return False
        for part in record["parts"]:
            self.parts[part].load_weights(self.stage_dir(name) / "parts" / f"{part}.keras")
        self.echo(f"stage {name}: done (artifacts verified), skipped")
        return True

    def optimizer(self, stage: dict):
        """Adam (beta_1, beta_2, epsilon) or SGD (momentum) at the stage's learning rate."""
        t = self.recipe["training"]
        rate = stage.get("learning_rate", t["learning_rate"])
        if stage.get("optimizer", t.get("optimizer", "adam")) == "sgd":
            return keras.optimizers.SGD(rate, momentum=t.get("momentum", 0.0))
        return keras.optimizers.Adam(rate, beta_1=t.get("beta_1", 0.9),
                                     beta_2=t.get("beta_2", 0.999),
                                     epsilon=t.get("epsilon", 1e-8))

    def callbacks(self, name: str, stage: dict, monitor: str, model) -> list:
        t = self.recipe["training"]
        directory = self.stage_dir(name)
        logdir = self.out / "tensorboard" / name
        found = [
            keras.callbacks.BackupAndRestore(str(directory / "backup")),
            keras.callbacks.EarlyStopping(monitor=monitor,
                                          patience=t["early_stopping_patience"],
                                          restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=t["reduce_lr_factor"],
                                              patience=t["reduce_lr_patience"],
                                              min_lr=t.get("min_learning_rate", 0.0)),
            keras.callbacks.TensorBoard(str(logdir)),
            hparams_callback(str(logdir), {"stage": name, **stage, "training": t}),
        ]
        if isinstance(model.output, dict) and "saliency" in model.output:
            split = "validation" if self.count("validation") else "train"
            batch = next(iter(load(self.data, split, batch_size=4)))
            found.append(SaliencyImages(str(logdir / "images"), batch["image"].numpy(),
                                        batch["heatmap"].numpy()))
        return found

    def train_stage(self, name: str, stage: dict) -> dict:
        t = self.recipe["training"]
        roles = {role: self.parts[part] for role, part in stage["parts"].items()}
        for part in set(stage["parts"].values()):
            self.parts[part].trainable = part in stage["trainable"]
        backup = self.stage_dir(name) / "backup" / "training_metadata.json"
        if self.resume and backup.is_file():
            epoch = json.loads(backup.read_text()).get("epoch", -1) + 1
            self.echo(f"stage {name}: resuming from its checkpoint after epoch {epoch}")
        with self.strategy.scope():
            model = tasks.training_view(tasks.stage_model(stage["task"], roles), stage["loss"])
            model.compile(self.optimizer(stage), loss=tasks.losses(stage["loss"], stage),
                          metrics=tasks.metrics(stage["task"], stage["loss"]),
                          run_eagerly=stage.get("run_eagerly", t.get("run_eagerly", False)),
                          jit_compile=t.get("jit_compile", False))
        balanced = stage.get("batches", "shuffled") == "balanced"
        train = self.dataset("train", stage["task"], stage["loss"], training=True,
                             balanced=balanced)
        global_batch = self.recipe["data"]["batch_size"] * self.strategy.num_replicas_in_sync
        steps = math.ceil(self.count("train") / global_batch) if balanced else None
        has_val = self.count("validation") > 0
        val = self.dataset("validation", stage["task"], stage["loss"], training=False) \
            if has_val else None
        monitor = "val_loss" if has_val else "loss"
        epochs = stage.get("epochs", t["epochs"])
        started = time.time()
        history = model.fit(train, validation_data=val, epochs=epochs, steps_per_epoch=steps,
                            callbacks=self.callbacks(name, stage, monitor, model),
                            verbose=1 if sys.stdout.isatty() else 2)
        if stage.get("precise_bn_batches", 0):
            batches = self.dataset("train", stage["task"], stage["loss"], training=True)
            used = recompute_batchnorm(model, batches.take(stage["precise_bn_batches"]))
            self.echo(f"stage {name}: BatchNorm statistics recomputed over {used} batches")
        record = {"parts": {}, "epochs_run": len(history.history.get("loss", [])),
                  "seconds": round(time.time() - started, 1),
                  "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
        for part in stage["trainable"]:
            path = self.stage_dir(name) / "parts" / f"{part}.keras"
            save_part(self.parts[part], path)
            record["parts"][part] = sha256_file(path)
            publish(path, part_path(self.out, part))
        partial = self.stage_dir(name) / "done.json.partial"
        partial.write_text(json.dumps(record, indent=2) + "\n")
        partial.replace(self.stage_dir(name) / "done.json")  # done only once whole
        return record

    def run(self) -> dict:
        """Trains every enabled stage; returns {stage: done record or "skipped"}."""
        self.echo(f"strategy: {self.strategy_kind} ({type(self.strategy).__name__}), "
                  f"{self.strategy.num_replicas_in_sync} replica(s)")
        self.build_parts()
        results = {}
        stages = self.enabled_stages()
        for index, (name, stage) in enumerate(stages.items(), start=1):
            self.echo(f"== stage {index}/{len(stages)}: {name} ({stage['task']}; trains "
                      f"{', '.join(stage['trainable']) or 'nothing'}) ==")
            self.stage_dir(name).mkdir(parents=True, exist_ok=True)
            results[name] = "skipped" if self.completed(name) else self.train_stage(name, stage)
        return results


def trace(recipe: dict, data: Path, strategy: str, argv: list[str]) -> dict:
    """What makes a result traceable: recipe, versions, seed, data checksum, command."""
    import keras_hub
    import scipy

    import cxrkit

    return {"recipe": recipe, "seed": recipe.get("seed", 0), "strategy": strategy,
            "command": argv, "data": str(data),
            "data_manifest_sha256": sha256_file(data / "manifest.json"),
            "versions": {"cxrkit": cxrkit.__version__, "tensorflow": tf.__version__,
                         "keras": keras.__version__, "keras_hub": keras_hub.__version__,
                         "numpy": np.__version__, "scipy": scipy.__version__,
                         "python": sys.version.split()[0]},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid()}
