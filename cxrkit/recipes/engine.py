"""The recipe engine: runs a recipe's stages in order, hands trained parts on, resumes.

The engine knows stages, not studies. For each enabled stage of a typed
:class:`~cxrkit.recipes.schema.Recipe` it

1. builds the stage model from its parts (:mod:`cxrkit.recipes.tasks`) and sets ``trainable``
   on each part exactly as the stage lists (:func:`cxrkit.models.set_trainable`; frozen parts
   keep their BatchNorm statistics);
2. trains it with the stage's optimiser (Adam or SGD), learning rate, epochs and batch size,
   under the chosen ``tf.distribute`` strategy; early stopping (best weights restored) and
   the plateau schedule (:class:`~cxrkit.recipes.callbacks.PlateauSchedule`, which can reload
   the best weights at each drop) watch the validation loss (the training loss when there is
   no validation split) when ``[training]`` sets their patience; with ``[training]
   cache_frozen`` a stage trains on its frozen parts' outputs computed once
   (:mod:`cxrkit.recipes.frozen_cache`, where that is exact);
3. saves the parts it trained (``stages/<name>/parts/<part>.keras``, also copied to
   ``parts/<part>.keras``, which always holds a part's latest version) and marks itself done
   (``stages/<name>/done.json`` with the checksums of its own part files).

Each stage logs to TensorBoard (``tensorboard/<stage>/``: loss, metrics and learning rate per
epoch, predicted saliency images, HParams) and checkpoints every epoch
(``stages/<name>/backup/``, Keras' BackupAndRestore: weights, optimizer and epoch; removed
when the stage completes, its trained parts being saved then) unless ``[training] checkpoint``
is off (the demos: writing every weight each epoch costs more than their epochs). With
``resume=True`` a done stage whose part files match their checksums is skipped and its parts
are loaded; the interrupted stage continues from its last epoch checkpoint.

Every part is built fresh, from a seed of its own (:func:`cxrkit.recipes.parts.part_seed`),
before saved weights are loaded, and every stage seeds its training the same way, so a resumed
run draws the same initial weights as an uninterrupted one, and a stage trained in the side
process (``[training] side_process``, :mod:`cxrkit.recipes.side_process`: the independent
stages, in a second process) trains as it would here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cxrkit.data import load, preprocessing_of, read_manifest
from cxrkit.errors import CxrkitError
from cxrkit.files import sha256_file, write_text_atomic
from cxrkit.models import fuse_batch_norms, set_trainable
from cxrkit.models.freeze import freeze_unused
from cxrkit.recipes import losses
from cxrkit.recipes.callbacks import PlateauSchedule, SaliencyImages, hparams_callback
from cxrkit.recipes.frozen_cache import FrozenCache, split_frozen
from cxrkit.recipes.fused_optimizers import FusedAdam, FusedAdamW, FusedSGD
from cxrkit.recipes.multi_worker import fix_keras_multi_worker_logs, worker_role
from cxrkit.recipes.parts import (
    build_parts,
    load_part_weights,
    part_path,
    part_seed,
    publish,
    save_part,
)
from cxrkit.recipes.precise_bn import recompute_batchnorm
from cxrkit.recipes.schema import Recipe, Stage
from cxrkit.recipes.side_process import SideProcess, loaded_back, side_stages
from cxrkit.recipes.tasks import TASKS, stage_model

STRATEGIES = ("default", "mirrored", "multi-worker")
CACHE_LIMIT_BYTES = 4 * 2**30  # [training] cache_frozen keeps the outputs in memory


def frozen_parts(stage: Stage) -> list[str]:
    """The stage's parts it does not train, sorted."""
    return sorted(set(stage.parts.values()) - set(stage.trainable))


def configure_process(recipe: Recipe) -> None:
    """The process-wide settings of ``[training]``: mixed precision, and Grappler on or off
    (it rewrites each traced graph before its first run, ~7 s for a DenseNet201 training step
    on 2 CPU cores: worth it over a long run, not over a demo stage)."""
    if recipe.training.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    tf.config.optimizer.set_experimental_options(
        {"disable_meta_optimizer": not recipe.training.grappler})


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
        fix_keras_multi_worker_logs()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise CxrkitError(f"unknown strategy {kind!r}; choose from {', '.join(STRATEGIES)}")


def make_optimizer(stage: Stage, t):
    """Adam (beta_1, beta_2, epsilon), AdamW or SGD (momentum) at the stage's learning rate
    (``t``: the recipe's ``[training]``): Keras' updates, each variable's in one fused kernel
    (:mod:`cxrkit.recipes.fused_optimizers`)."""
    if stage.optimizer == "sgd":
        return FusedSGD(stage.learning_rate, momentum=t.momentum)
    if stage.optimizer == "adamw":  # PyTorch's AdamW defaults (GazeGNN's train.py)
        return FusedAdamW(stage.learning_rate, weight_decay=0.01,
                          beta_1=t.beta_1, beta_2=t.beta_2, epsilon=t.epsilon)
    return FusedAdam(stage.learning_rate, beta_1=t.beta_1, beta_2=t.beta_2, epsilon=t.epsilon)


class Run:
    """One recipe run in ``out`` (see the module docstring)."""

    def __init__(self, recipe: Recipe, data: Path, out: Path, *, strategy: str = "default",
                 resume: bool = False, echo=print):
        self.recipe, self.data, self.out = recipe, data, out
        self.resume, self.echo = resume, echo
        self.side = None  # after run(): the side process exporting the final model, if any
        self.aside: list[str] = []  # after run(): the stages the side process trained
        self.manifest = read_manifest(data)
        self.preprocessing = preprocessing_of(self.manifest)
        if self.preprocessing.name != recipe.data.dataset:
            raise CxrkitError(f"{data}: holds {self.preprocessing.name} records but the recipe "
                              f"needs {recipe.data.dataset}")
        self.input_shape = (*self.preprocessing.size, 1)
        self.class_names = list(self.manifest["classes"])
        self.strategy_kind, self.strategy = strategy, make_strategy(strategy)
        self.role = worker_role(strategy)
        self.parts: dict[str, keras.Model] = {}

    # --- data -----------------------------------------------------------------------------
    def count(self, split: str) -> int:
        return int(self.manifest["counts"].get(split, {}).get("total", 0))

    def global_batch(self, stage: Stage) -> int:
        return stage.batch_size * self.strategy.num_replicas_in_sync

    def augmentation(self, stage: Stage) -> str:
        """The reader's augmentation mode for the stage's training batches."""
        if stage.augmentation != "recipe":
            return stage.augmentation
        return "mlmi2023" if self.recipe.data.augment else "none"

    def dataset(self, split: str, stage: Stage, *, training: bool, balanced: bool = False):
        """(image, targets) batches of ``split`` for ``stage``'s losses."""
        task = TASKS[stage.task]
        missing = task.missing_features(self.manifest["features"])
        if missing:
            raise CxrkitError(f"stage {stage.name} ({stage.task}) needs the record feature(s) "
                              f"{', '.join(missing)}, which {self.data} lacks; convert EGD-CXR "
                              "from a gaze table with a 'Time (in secs)' column")
        ds = load(self.data, split, batch_size=self.global_batch(stage), shuffle=training,
                  augment=self.augmentation(stage) if training else "none", seed=self.recipe.seed,
                  balanced=balanced and training)
        ds = ds.map(lambda ex: (task.model_inputs(ex), losses.targets(stage, ex)))
        if self.role is not None:
            # Every worker reads the same seeded stream and keeps its slice of each global
            # batch (tf.distribute rebatches, then shards). FILE sharding would need at least
            # as many files as workers and equal examples per file (the reader declares each
            # split's length); DATA works for any number of shards and makes a multi-worker
            # step the same as a one-process step on the same global batch.
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.DATA)
            ds = ds.with_options(options)
        return ds

    # --- parts ----------------------------------------------------------------------------
    def used_parts(self, stages: list[str] | None = None) -> list[str]:
        """The parts of ``stages`` (every enabled stage when None), each once, in order."""
        names = []
        for name, stage in self.recipe.enabled_stages().items():
            if stages is None or name in stages:
                names += [p for p in stage.parts.values() if p not in names]
        return names

    def build_parts(self, stages: list[str] | None = None) -> None:
        """Builds the parts of ``stages`` (every enabled stage when None) into ``parts``."""
        with self.strategy.scope():
            self.parts = build_parts(self.used_parts(stages), self.recipe.parts,
                                     self.input_shape, len(self.class_names),
                                     seed=self.recipe.seed)
        for part in self.parts.values():  # Keras' BatchNorm, its training step in one kernel
            fuse_batch_norms(part)

    # --- stages ---------------------------------------------------------------------------
    def stage_dir(self, name: str) -> Path:
        return self.out / "stages" / name

    def completed(self, name: str) -> bool:
        """With ``--resume``: True when the stage is done and its saved parts are intact
        (then loaded)."""
        if not (self.resume and (self.stage_dir(name) / "done.json").is_file()):
            return False
        try:
            self.load_stage(name)
        except CxrkitError as err:
            self.echo(f"{err}; training the stage again")
            return False
        self.echo(f"stage {name}: done (artifacts verified), skipped")
        return True

    def load_stage(self, name: str) -> dict:
        """Loads a finished stage's saved parts after checking them against its
        ``done.json``; returns that record. Raises ``CxrkitError`` naming a part file that is
        missing or changed."""
        record = json.loads((self.stage_dir(name) / "done.json").read_text())
        for part, digest in record["parts"].items():
            path = self.stage_dir(name) / "parts" / f"{part}.keras"
            if not path.is_file() or sha256_file(path) != digest:
                raise CxrkitError(f"stage {name}: saved part {path} is missing or changed")
        for part in record["parts"]:
            load_part_weights(self.parts[part], self.stage_dir(name) / "parts" / f"{part}.keras")
        return record

    def optimizer(self, stage: Stage):
        """The stage's optimiser (:func:`make_optimizer`)."""
        return make_optimizer(stage, self.recipe.training)

    def callbacks(self, stage: Stage, monitor: str, model, caches=None) -> list:
        """Keras' and cxrkit's callbacks of a stage; ``caches`` ({split: FrozenCache}) when
        ``model`` trains on the frozen parts' cached outputs (the saliency images' inputs)."""
        t = self.recipe.training
        logdir = self.out / "tensorboard" / stage.name
        found = []
        if t.checkpoint:
            found.append(keras.callbacks.BackupAndRestore(
                str(self.stage_dir(stage.name) / "backup")))
        if t.early_stopping_patience:
            found.append(keras.callbacks.EarlyStopping(
                monitor=monitor, patience=t.early_stopping_patience,
                restore_best_weights=True))
        if t.reduce_lr_patience:
            found.append(PlateauSchedule(
                monitor, factor=t.reduce_lr_factor, patience=t.reduce_lr_patience,
                min_lr=t.min_learning_rate, reload_best=t.reload_best_on_reduce))
        if self.role is not None and not self.role.chief:
            return found  # the chief alone logs (this worker's backups go to its scratch)
        found += [keras.callbacks.TensorBoard(str(logdir)),
                  hparams_callback(str(logdir), {**dataclasses.asdict(stage),
                                                 "training": dataclasses.asdict(t)})]
        if isinstance(model.output, dict) and "saliency" in model.output:
            split = "validation" if self.count("validation") else "train"
            batch = next(iter(load(self.data, split, batch_size=4)))
            images = batch["image"].numpy()
            inputs = None if caches is None else keras.tree.map_structure(  # the same images
                lambda a: a[:len(images)], caches[split].features)
            found.append(SaliencyImages(str(logdir / "images"), images, batch["heatmap"].numpy(),
                                        inputs=inputs))
        return found

    def frozen_split(self, stage: Stage, model):
        """``(prefix, suffix)`` of the stage's training model when ``[training] cache_frozen``
        is on and caching is exact (:mod:`cxrkit.recipes.frozen_cache`), else None."""
        if not self.recipe.training.cache_frozen or self.role is not None:
            return None
        if self.augmentation(stage) != "none" or stage.batches == "balanced":
            return None  # the frozen parts would see other images at every step
        if not frozen_parts(stage):
            return None
        split = split_frozen(model)
        if split is None:
            return None
        shapes = [t.shape[1:] for t in keras.tree.flatten(split[0].outputs)]
        if any(None in shape for shape in shapes):
            return None  # outputs of varying size: no array holds them
        values = sum(math.prod(shape) for shape in shapes)
        size = 4 * values * (self.count("train") + self.count("validation"))
        if size > CACHE_LIMIT_BYTES:
            self.echo(f"stage {stage.name}: frozen outputs not cached (they would take "
                      f"{size / 2**30:.1f} GiB)")
            return None
        return split

    def cached_splits(self, stage: Stage, prefix):
        """The train and validation batches of the frozen parts' outputs, computed once, and
        the caches themselves ({split: FrozenCache}, in the records' order)."""
        caches = {"train": FrozenCache(prefix, self.dataset("train", stage, training=False))}
        if self.count("validation"):
            caches["validation"] = FrozenCache(
                prefix, self.dataset("validation", stage, training=False))
        size = sum(cache.nbytes for cache in caches.values())
        self.echo(f"stage {stage.name}: outputs of the frozen {', '.join(frozen_parts(stage))} "
                  f"computed once ({size / 2**20:.1f} MiB); training the rest on them")
        batch = self.global_batch(stage)
        val = caches.get("validation")
        return (caches["train"].dataset(batch, shuffle=True, seed=self.recipe.seed),
                val.dataset(batch, shuffle=False) if val else None, caches)

    def seed_stage(self, stage: Stage) -> None:
        """Seeds the stage's own random stream (the reader's shuffle, which TensorFlow also
        derives from the global seed; dropout; unseeded ops), whatever ran before it."""
        keras.utils.set_random_seed(part_seed(self.recipe.seed, f"stage/{stage.name}"))

    def train_stage(self, stage: Stage) -> dict:
        """Trains one stage (see the module docstring); returns its ``done.json`` record."""
        self.seed_stage(stage)
        set_trainable(self.parts, {part: part in stage.trainable
                                   for part in set(stage.parts.values())})
        backup = self.stage_dir(stage.name) / "backup" / "training_metadata.json"
        if self.resume and backup.is_file():
            done = json.loads(backup.read_text()).get("epoch", 0)  # epochs completed
            self.echo(f"stage {stage.name}: resuming from its checkpoint after epoch {done}")
        with self.strategy.scope():
            model = losses.training_view(stage_model(stage, self.parts), stage)
            unused = freeze_unused(model)
            split = self.frozen_split(stage, model)
            if split is not None:  # train the rest on the frozen parts' outputs
                prefix, model = split
            model.compile(self.optimizer(stage), loss=losses.keras_losses(stage),
                          metrics=losses.accuracy_metrics(stage), run_eagerly=stage.run_eagerly,
                          jit_compile=self.recipe.training.jit_compile)
            # Made here, the optimizer's slot variables are not created inside the first
            # traced train step, which TensorFlow would then trace twice (half the cost of
            # compiling a DenseNet201 step).
            model.optimizer.build(model.trainable_variables)
        balanced = stage.batches == "balanced"
        has_val = self.count("validation") > 0
        if split is None:
            train = self.dataset("train", stage, training=True, balanced=balanced)
            val = self.dataset("validation", stage, training=False) if has_val else None
        else:
            train, val, caches = self.cached_splits(stage, prefix)
        steps = math.ceil(self.count("train") / self.global_batch(stage)) if balanced else None
        monitor = "val_loss" if has_val else "loss"
        started = time.time()
        scope = contextlib.nullcontext()
        if self.role is not None:
            # Keras 3 (keras-team/keras#20585): a model that remembers its
            # MultiWorkerMirroredStrategy reduces the first distributed batch to build itself,
            # which fails for nested batches; forgotten, it builds in the traced step, and
            # fitting inside the strategy's scope still distributes every step.
            model._distribute_strategy = None
            scope = self.strategy.scope()
        with scope:
            history = model.fit(train, validation_data=val, epochs=stage.epochs,
                                steps_per_epoch=steps,
                                callbacks=self.callbacks(stage, monitor, model,
                                                         None if split is None else caches),
                                shuffle=False,  # the reader shuffles; Keras cannot shuffle
                                verbose=1 if sys.stdout.isatty() else 2)
        for layer in unused:  # frozen for this stage's view only
            layer.trainable = True
        if stage.precise_bn_batches:
            batches = train if split is not None else self.dataset("train", stage, training=True)
            used, images = recompute_batchnorm(model, batches.take(stage.precise_bn_batches))
            self.echo(f"stage {stage.name}: BatchNorm statistics recomputed from {images} "
                      f"training images ({used} batches)")
        record = {"parts": {}, "epochs_run": len(history.history.get("loss", [])),
                  "seconds": round(time.time() - started, 1),
                  "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
        for part in stage.trainable:
            path = self.stage_dir(stage.name) / "parts" / f"{part}.keras"
            save_part(self.parts[part], path)
            record["parts"][part] = sha256_file(path)
            publish(path, part_path(self.out, part))
        # done only once whole
        write_text_atomic(self.stage_dir(stage.name) / "done.json",
                          json.dumps(record, indent=2) + "\n")
        return record

    def detach_parts(self) -> None:
        """Replaces the parts by undistributed copies with the trained weights (a multi-worker
        run's chief evaluates, reports and exports alone; a distributed model would wait for
        the other workers at every ``predict``)."""
        with tempfile.TemporaryDirectory() as folder:
            for name, part in self.parts.items():
                path = Path(folder) / f"{name}.keras"
                part.save(path)
                self.parts[name] = keras.saving.load_model(path)

    def run(self) -> dict:
        """Trains every enabled stage; returns {stage: done record or "skipped"}."""
        self.echo(f"strategy: {self.strategy_kind} ({type(self.strategy).__name__}), "
                  f"{self.strategy.num_replicas_in_sync} replica(s)")
        aside = side_stages(self.recipe, self.strategy_kind)
        side = None
        if aside:
            side = SideProcess(self.recipe, self.data, self.out, aside, resume=self.resume)
            self.echo(f"stages {', '.join(aside)}: trained in a second process alongside this "
                      "one ([training] side_process); their output follows in the recipe's "
                      "order")
        try:
            stages = self.recipe.enabled_stages()
            back = loaded_back(self.recipe, aside)
            self.build_parts([n for n in stages if n not in aside or n in back])
            self.aside = aside
            results = {}
            for index, (name, stage) in enumerate(stages.items(), start=1):
                self.echo(f"== stage {index}/{len(stages)}: {name} ({stage.task}; trains "
                          f"{', '.join(stage.trainable) or 'nothing'}) ==")
                self.stage_dir(name).mkdir(parents=True, exist_ok=True)
                if name in aside:
                    side.wait_for(name, self.echo)
                    results[name] = (self.load_stage(name) if name in back else json.loads(
                        (self.stage_dir(name) / "done.json").read_text()))
                else:
                    results[name] = "skipped" if self.completed(name) else self.train_stage(stage)
            if side is not None and side.exports:
                side.parts_final()  # it exports while this process evaluates and reports
                self.side = side
        finally:
            if side is not None and self.side is not side:
                side.stop()
        return results


def trace(recipe: Recipe, data: Path, strategy: str, argv: list[str]) -> dict:
    """What makes a result traceable: recipe, versions, seed, data checksum, command."""
    import keras_hub
    import scipy

    import cxrkit

    return {"recipe": recipe.to_dict(), "seed": recipe.seed, "strategy": strategy,
            "command": argv, "data": str(data),
            "data_manifest_sha256": sha256_file(data / "manifest.json"),
            "versions": {"cxrkit": cxrkit.__version__, "tensorflow": tf.__version__,
                         "keras": keras.__version__, "keras_hub": keras_hub.__version__,
                         "numpy": np.__version__, "scipy": scipy.__version__,
                         "python": sys.version.split()[0]},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid()}
