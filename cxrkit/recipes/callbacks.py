"""Callbacks a recipe stage trains with, besides Keras' own.

- :class:`SaliencyImages` writes the predicted saliency of fixed images to TensorBoard
  (``images/saliency``) after every epoch, beside the gaze truth written once;
- :func:`hparams_callback` records the stage's hyper-parameters for the HParams plugin;
- :class:`PlateauSchedule` lowers the learning rate on a plateau of the monitored loss and,
  as the MLMI 2024 authors' code does, can reload the best weights so far when it does.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _as_image(maps: np.ndarray) -> np.ndarray:
    maps = np.asarray(maps, np.float32)
    peak = maps.max(axis=(1, 2, 3), keepdims=True)
    return maps / np.where(peak > 0, peak, 1.0)


class SaliencyImages(keras.callbacks.Callback):
    """Predicted saliency maps of ``images`` (B, H, W, 1), each scaled to its peak.

    ``inputs``: what the fitted model takes for those images when it is not the images
    themselves (a model trained on cached frozen outputs: :mod:`cxrkit.recipes.frozen_cache`).
    """

    def __init__(self, logdir: str, images: np.ndarray, gaze: np.ndarray | None = None,
                 inputs=None):
        super().__init__()
        self.logdir, self.images, self.gaze = logdir, images, gaze
        self.inputs = images if inputs is None else inputs
        self.writer = None

    def on_train_begin(self, logs=None):
        # traced once: an eager UNet call costs ~0.2 s of per-op dispatch every epoch. A plain
        # function, not predict: under a multi-worker strategy only the chief logs, and a
        # distributed predict would wait for the other workers.
        model = self.model
        self.saliency = tf.function(lambda inputs: model(inputs, training=False)["saliency"])
        self.writer = tf.summary.create_file_writer(self.logdir)
        with self.writer.as_default():
            tf.summary.image("images/input", _as_image(self.images - self.images.min()),
                             step=0, max_outputs=len(self.images))
            if self.gaze is not None:
                tf.summary.image("images/gaze_truth", _as_image(self.gaze), step=0,
                                 max_outputs=len(self.images))

    def on_epoch_end(self, epoch, logs=None):
        saliency = self.saliency(self.inputs)
        with self.writer.as_default():
            tf.summary.image("images/saliency", _as_image(saliency), step=epoch,
                             max_outputs=len(self.images))
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()


class PlateauSchedule(keras.callbacks.Callback):
    """ReduceLROnPlateau with an option to go back to the best weights at every drop.

    After ``patience`` epochs in which ``monitor`` did not improve on its best, the learning
    rate is multiplied by ``factor`` (not below ``min_lr``) and the wait starts again; with
    ``reload_best`` the model's weights are first set back to those of the best epoch so far,
    as the authors' ``train_judgetment`` reloads its best checkpoint at each drop. Without it,
    this is Keras' ReduceLROnPlateau.
    """

    def __init__(self, monitor: str, *, factor: float, patience: int, min_lr: float = 0.0,
                 reload_best: bool = False):
        super().__init__()
        self.monitor, self.factor, self.patience = monitor, factor, patience
        self.min_lr, self.reload_best = min_lr, reload_best
        self.best, self.best_weights, self.wait = np.inf, None, 0

    def on_train_begin(self, logs=None):
        self.best, self.best_weights, self.wait = np.inf, None, 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        self._step(logs.get(self.monitor))
        # every epoch, as Keras' ReduceLROnPlateau does: the console and TensorBoard show it
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(
            self.model.optimizer.learning_rate))

    def _step(self, current) -> None:
        if current is None:
            return
        if current < self.best:
            self.best, self.wait = float(current), 0
            if self.reload_best:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        self.wait = 0
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        lowered = max(rate * self.factor, self.min_lr)
        if lowered < rate:
            self.model.optimizer.learning_rate = lowered
            if self.reload_best and self.best_weights is not None:
                self.model.set_weights(self.best_weights)


def flatten(table: dict, prefix: str = "") -> dict:
    """Nested recipe tables to ``a.b.c`` keys with scalar values (lists as text)."""
    flat = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def hparams_callback(logdir: str, hyperparameters: dict) -> keras.callbacks.Callback:
    """TensorBoard's HParams plugin callback for the flattened ``hyperparameters``."""
    from tensorboard.plugins.hparams import api as hp

    return hp.KerasCallback(logdir, flatten(hyperparameters))
