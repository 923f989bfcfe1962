"""The record reader behind :func:`cxrkit.data.load` (see the package docstring).

The manifest names the records' preprocessing convention (:mod:`cxrkit.preprocessing`): its
``normalise`` turns the stored image into model input, its ``target`` names the per-pixel
target (mask or heatmap) and ``id_features`` the id strings each example carries.
"""

from __future__ import annotations

import functools
import json
import math
import os

import tensorflow as tf

from cxrkit.data.gazegnn_augmentation import gazegnn_matrix
from cxrkit.errors import CxrkitError, InputError
from cxrkit.files import SHARD_NAME, sha256_file
from cxrkit.preprocessing import Preprocessing, from_config


def read_manifest(directory: str | os.PathLike) -> dict:
    """The ``manifest.json`` of a record folder, checked for the keys the reader needs."""
    path = os.path.join(os.fspath(directory), "manifest.json")
    try:
        with open(path) as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise InputError(path, "no manifest.json: is this a folder written by "
                               "`cxrkit data siim-acr|egd-cxr`?") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"manifest is not valid JSON ({err.msg})") from None
    missing = [k for k in ("preprocessing", "features", "shards", "shard_checksums", "counts",
                           "classes") if k not in manifest]
    if missing:
        raise InputError(path, f"manifest lacks {', '.join(missing)} (written by an older "
                               "cxrkit? convert the data again)")
    try:
        from_config(manifest["preprocessing"])
    except CxrkitError as err:
        raise InputError(path, str(err)) from None
    return manifest


@functools.lru_cache(maxsize=4096)
def _sha256(path: str, size: int, modified_ns: int) -> str:
    """A file's SHA-256, computed once per process for a given size and modification time."""
    return sha256_file(path)


def verified_shards(directory: str | os.PathLike, manifest: dict, split: str) -> list[str]:
    """The paths of ``split``'s shards, after checking the folder against the manifest.

    Refuses (``InputError`` naming the file) a shard the manifest lists that is missing or
    whose size or SHA-256 differs from the manifest's, and any shard file in the folder that
    the manifest does not list: records of two conversions are never read as one.
    """
    directory = os.fspath(directory)
    listed = {name for names in manifest["shards"].values() for name in names}
    for name in sorted(os.listdir(directory)):
        if SHARD_NAME.fullmatch(name) and name not in listed:
            raise InputError(os.path.join(directory, name),
                             "shard is not listed in manifest.json (left by another "
                             "conversion?); convert into an empty folder")
    paths = []
    for name in manifest["shards"][split]:
        path = os.path.join(directory, name)
        expected = manifest["shard_checksums"].get(name)
        if not os.path.isfile(path):
            raise InputError(path, "shard listed in manifest.json is missing")
        stat = os.stat(path)
        if expected is None or stat.st_size != expected["bytes"] or _sha256(
                path, stat.st_size, stat.st_mtime_ns) != expected["sha256"]:
            raise InputError(path, "shard does not match the checksum in manifest.json "
                                   "(changed or rewritten since the conversion); convert "
                                   "the data again")
        paths.append(path)
    return paths


def preprocessing_of(manifest: dict) -> Preprocessing:
    """The preprocessing convention the records of ``manifest`` were written with."""
    return from_config(manifest["preprocessing"])


EXTRA_MAPS = ("gaze_dwell",)  # per-pixel inputs a record may carry beside its target


def _parser(manifest: dict):
    """Parses one serialized example: the image normalised by the records' preprocessing,
    the target map scaled to [0, 1], the label and the id features."""
    pre = preprocessing_of(manifest)
    target = pre.target
    maps = [target, *(k for k in EXTRA_MAPS if k in manifest["features"])]
    spec = {"image": tf.io.FixedLenFeature([], tf.string),
            **{name: tf.io.FixedLenFeature([], tf.string) for name in maps},
            "label": tf.io.FixedLenFeature([], tf.int64),
            **{name: tf.io.FixedLenFeature([], tf.string) for name in pre.id_features}}
    dtype = tf.as_dtype(pre.target_dtype)

    def parse(serialized):
        example = tf.io.parse_single_example(serialized, spec)
        image = tf.cast(tf.io.decode_png(example["image"], channels=1), tf.float32)
        decoded = {name: tf.cast(tf.io.decode_png(example[name], channels=1, dtype=dtype),
                                 tf.float32) / pre.target_scale for name in maps}
        return {"image": pre.normalise(image), **decoded,
                "label": tf.cast(example["label"], tf.int32),
                **{name: example[name] for name in pre.id_features}}

    return parse


def _flip_rotation_matrices(angles, flips, height, width):
    """Projective transforms (B, 8): rotate by ``angles`` (radians) about the centre, then
    mirror left-right where ``flips`` is true. One resampling does both.

    A transform maps each output pixel (x, y) to the input point it reads; mirroring the
    output replaces x_in by (width - 1) - x_in.
    """
    cos, sin = tf.cos(angles), tf.sin(angles)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    a0, a1, a2 = cos, -sin, cx - cos * cx + sin * cy
    sign = tf.where(flips, -1.0, 1.0)
    offset = tf.where(flips, width - 1.0, 0.0)
    zeros = tf.zeros_like(angles)
    return tf.stack([sign * a0, sign * a1, offset + sign * a2,
                     sin, cos, cy - sin * cx - cos * cy, zeros, zeros], axis=1)


def transform(images, matrices, interpolation: str = "BILINEAR"):
    """Resample (B, H, W, C) images through projective ``matrices`` (B, 8), zeros outside.

    ``interpolation`` is ``"BILINEAR"`` or ``"NEAREST"`` (for label masks).
    """
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=matrices, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation=interpolation, fill_mode="CONSTANT")


def noise_bank(height: int, width: int, seed: int) -> tf.Tensor:
    """A (2 * height, 2 * width, 1) field of standard normal noise for :func:`augment_batch`.

    Cropping a random window from one field drawn up front gives every image Gaussian pixel
    noise for the cost of a copy; drawing fresh normals per image is the most expensive step
    of the augmentation on a CPU.
    """
    return tf.random.stateless_normal([2 * height, 2 * width, 1], seed=[seed, 0x5EED])


def augment_batch(example: dict, seed, *, max_degrees: float = 10.0, noise_std: float = 0.05,
                  brightness: float = 0.1, contrast: float = 0.1,
                  noise: tf.Tensor | None = None) -> dict:
    """The 2023 study's augmentation on a batch (B, H, W, C), stateless given ``seed``.

    ``seed`` is a shape-[2] int tensor; each image of the batch draws its own flip, rotation
    (uniform within +-``max_degrees``), contrast and brightness factors and noise. Flip and
    rotation apply to the image, the mask/heatmap and an extra input map (``gaze_dwell``)
    alike (bilinear; a 0/1 mask nearest neighbour, so it stays binary); brightness, contrast
    and Gaussian noise touch the image only and are relative to each image's standard
    deviation, so they mean the same for z-scored and [0, 1] images. ``noise`` optionally
    supplies the standard normal pixel noise (same shape as the images, e.g. windows of a
    :func:`noise_bank`) instead of fresh draws.
    """
    target = "mask" if "mask" in example else "heatmap"
    image, target_map = example["image"], example[target]
    batch = tf.shape(image)[0]
    # Per image, in [-1, 1): flip (< 0), rotation, contrast and brightness factors.
    draws = tf.random.stateless_uniform([4, batch], seed, -1.0, 1.0)
    flips, angles = draws[0] < 0.0, draws[1] * (max_degrees * math.pi / 180)
    size = tf.cast(tf.shape(image)[1:3], tf.float32)
    matrices = _flip_rotation_matrices(angles, flips, size[0], size[1])

    # The image and a heatmap are resampled bilinearly, a 0/1 mask with nearest neighbour
    # (it stays 0/1; an empty mask, most SIIM-ACR images, needs no resampling). Each map is
    # its own call: concatenating single-channel maps costs a per-pixel copy each way.
    image = transform(image, matrices)
    extra = {k: transform(example[k], matrices) for k in EXTRA_MAPS if k in example}
    if target == "mask":
        target_map = tf.cond(tf.reduce_any(target_map > 0),
                             lambda: transform(target_map, matrices, "NEAREST"),
                             lambda: target_map)
    else:
        target_map = transform(target_map, matrices)
    if noise is None:
        noise = tf.random.stateless_normal(
            tf.shape(image), tf.random.experimental.stateless_fold_in(seed, 1))
    scale = tf.math.reduce_std(image, axis=[1, 2, 3])
    factor = tf.reshape(1.0 + contrast * draws[2], [-1, 1, 1, 1])
    shift = tf.reshape(scale * brightness * draws[3], [-1, 1, 1, 1])
    image = image * factor + (shift + tf.reshape(scale * noise_std, [-1, 1, 1, 1]) * noise)
    return {**example, "image": image, target: target_map, **extra}


AUGMENTATIONS = ("none", "mlmi2023", "gazegnn")


def load(directory: str | os.PathLike, split: str, *, batch_size: int | None = None,
         shuffle: bool = False, augment: bool | str = False, seed: int | None = None,
         balanced: bool = False, cache: bool = False, repeat: bool = False) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of one split of a record folder (see the package docstring).

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"``.
        batch_size: batch the examples (``None`` yields single examples).
        shuffle: shuffle examples (and shard order) each epoch; ``seed`` fixes the order.
        augment: augment each example: ``"mlmi2023"`` (or ``True``) the 2023 study's
            :func:`augment_batch`, ``"gazegnn"`` GazeGNN's rotation, random resized crop and
            flip (:mod:`cxrkit.data.gazegnn_augmentation`), ``"none"`` (or ``False``) none.
            Each example's draw comes from a random stream seeded with ``seed`` that is
            redrawn on every pass, so every epoch sees new augmentations while a new dataset
            with the same seed reproduces the same sequence of epochs.
        balanced: class-balanced batches for triplet training: examples are drawn
            round-robin from per-class streams (repeated forever), so every batch of
            ``batch_size >= 2 * classes`` holds at least two images of each class present.
        cache: cache decoded examples in memory after the first pass.
        repeat: repeat forever (implied by ``balanced``).
    """
    mode = {True: "mlmi2023", False: "none"}.get(augment, augment)
    if mode not in AUGMENTATIONS:
        raise CxrkitError(f"unknown augmentation {augment!r}; choose from "
                          f"{', '.join(AUGMENTATIONS)}")
    manifest = read_manifest(directory)
    if split not in manifest["shards"]:
        raise InputError(directory, f"no split {split!r}; the manifest has "
                                    f"{', '.join(manifest['shards'])}")
    names = manifest["shards"][split]
    if not names:
        raise InputError(directory, f"split {split!r} holds no images")
    files = verified_shards(directory, manifest, split)
    compression = manifest.get("compression") or ""
    seed = 0 if seed is None else seed
    shard_ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        shard_ds = shard_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    records = shard_ds.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type=compression),
        cycle_length=min(len(files), 4), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True)
    dataset = records.map(_parser(manifest), num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        dataset = dataset.cache()
    if balanced:
        if batch_size is None:
            raise ValueError("balanced batches need a batch_size")
        present = [c for c, n in enumerate(_class_counts(manifest, split)) if n]
        if batch_size < 2 * len(present):
            raise ValueError(f"balanced batches of {batch_size} cannot hold two images of "
                             f"each of {len(present)} classes")
        streams = [dataset.filter(lambda e, c=c: e["label"] == c).repeat()
                   .shuffle(256, seed=seed + c) for c in present]
        order = tf.data.Dataset.range(len(present)).repeat()
        dataset = tf.data.Dataset.choose_from_datasets(streams, order)
    else:
        if shuffle:
            dataset = dataset.shuffle(min(4096, _total(manifest, split)), seed=seed,
                                      reshuffle_each_iteration=True)
        if repeat:
            dataset = dataset.repeat()
    if mode != "none":  # per example, so tf.data spreads the work over all cores
        height, width = manifest["features"]["image"]["shape"][:2]
        one = (functools.partial(_augment_one, bank=noise_bank(height, width, seed))
               if mode == "mlmi2023" else
               functools.partial(_augment_gazegnn, height=height, width=width))
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip(dataset, draws).map(
            lambda example, draw: one(example, tf.stack([tf.cast(seed, tf.int64), draw])),
            num_parallel_calls=tf.data.AUTOTUNE)
    if batch_size is not None:
        dataset = dataset.batch(batch_size, drop_remainder=balanced)
    if not (balanced or repeat):
        # The manifest knows how many examples there are; telling tf.data lets Keras size its
        # progress bars and epochs instead of warning that the input "ran out of data".
        total = _total(manifest, split)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(
            total if batch_size is None else math.ceil(total / batch_size)))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _augment_one(example: dict, seed, bank: tf.Tensor) -> dict:
    """:func:`augment_batch` on one example, its noise a random window of ``bank``."""
    maps = [k for k in ("image", "mask", "heatmap", *EXTRA_MAPS) if k in example]
    shape = tf.shape(example["image"])
    corner = tf.random.stateless_uniform([2], tf.random.experimental.stateless_fold_in(seed, 7),
                                         0, tf.reduce_min(tf.shape(bank)[:2] - shape[:2] + 1),
                                         tf.int32)
    noise = tf.slice(bank, [corner[0], corner[1], 0], shape)
    batch = augment_batch({k: example[k][None] for k in maps}, seed, noise=noise[None])
    return {**example, **{k: batch[k][0] for k in maps}}


def _augment_gazegnn(example: dict, seed, *, height: int, width: int) -> dict:
    """GazeGNN's augmentation on one example: one transform for every map (a 0/1 mask
    nearest neighbour, so it stays 0/1)."""
    matrix = gazegnn_matrix(seed, height, width)[None]
    out = dict(example)
    for key in ("image", "mask", "heatmap", *EXTRA_MAPS):
        if key in example:
            out[key] = transform(example[key][None], matrix,
                                 "NEAREST" if key == "mask" else "BILINEAR")[0]
    return out


def _total(manifest: dict, split: str) -> int:
    return int(manifest["counts"][split]["total"])


def _class_counts(manifest: dict, split: str) -> list[int]:
    counts = manifest["counts"][split]
    return [int(counts[name]) for name in manifest["classes"]]
