"""Sharded TFRecord output shared by the converters: examples, shards, manifest, splits.

Contract of an output folder (docs/data.md, "Converting to TFRecords"):

* ``<split>-00000-of-000NN.tfrecord`` shards (``.tfrecord.gz`` with GZIP), one
  ``tf.train.Example`` per image, examples in a fixed order and serialized deterministically
  (features in key order), so the same inputs and seed give byte-identical shards whatever
  the number of worker processes;
* ``manifest.json`` beside them: dataset, feature spec, counts per split and class, shard
  names with their sizes and SHA-256 (the reader reads those files only, and refuses a folder
  whose shards do not match), parameters, source checksums, tool version and the skipped
  inputs with their reasons;
* atomic writing: every file is written under a temporary name and renamed when complete; a
  conversion first removes the previous manifest (an interrupted one then leaves no manifest
  that could vouch for a mix of old and new shards) and, once its own shards are written,
  every shard it did not write; it refuses a folder holding files cxrkit did not write.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cxrkit import __version__
from cxrkit.errors import InputError
from cxrkit.files import SHARD_NAME, sha256_file

PARTIAL = ".partial"
MANIFEST = "manifest.json"
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Skipped:
    """An input left out of the records, and why."""

    source: str
    reason: str

    def as_dict(self) -> dict:
        return {"source": self.source, "reason": self.reason}


@dataclass(frozen=True)
class Encoded:
    """What a converter's worker makes of one image: PNG bytes and the source's checksum."""

    image_png: bytes
    target_png: bytes  # the mask or heatmap
    sha256: str
    extra: dict = field(default_factory=dict)  # further PNG features by name (gaze_dwell)


@dataclass(frozen=True)
class Converted:
    """One image that made it into the records."""

    label: int
    source: str  # path relative to the image root, as reported in the manifest
    encoded: Encoded
    patient_id: str = ""


MAX_SIDE = 4096  # largest stored image side: 4x the SIIM-ACR images, above any study's input


def check_size(option: str, *sides: int) -> None:
    """Refuse stored image sides outside 16..MAX_SIDE (a huge one would only exhaust memory)."""
    for side in sides:
        if not 16 <= side <= MAX_SIDE:
            raise InputError(option, f"image side {side} is outside 16..{MAX_SIDE} pixels")


def allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` items into ``len(weights)`` integer parts proportional to ``weights``.

    Largest-remainder rounding: the parts always add up to ``total`` (nothing is dropped), and
    ties go to the earlier part.
    """
    weights = np.asarray(weights, dtype=float)
    if total < 0 or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"cannot allocate {total} items by weights {list(weights)}")
    exact = total * weights / weights.sum()
    parts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - parts), kind="stable")
    parts[order[: total - parts.sum()]] += 1
    return parts.tolist()


def stratified_split(labels: Sequence[int], weights: Sequence[float],
                     rng: np.random.Generator) -> list[list[int]]:
    """Indices of ``labels`` per split: each class is shuffled and allocated by ``weights``.

    Every index lands in exactly one split; the classes keep their proportions in every split
    up to rounding. Indices within a split keep ascending order.
    """
    labels = np.asarray(labels)
    splits: list[list[int]] = [[] for _ in weights]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        bounds = np.cumsum([0, *allocate(len(members), weights)])
        for split, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            splits[split].extend(members[start:stop].tolist())
    return [sorted(split) for split in splits]


MIN_PARALLEL_SHARDS = 8  # a split of 800+ examples gets at least this many shards


def shard_count(examples: int, requested: int | None) -> int:
    """Shards for a split: as requested (never more than examples), else about 1,000 examples
    a shard and, from 800 examples on, at least :data:`MIN_PARALLEL_SHARDS` of 100+: enough
    files for tf.data to read in parallel and for several training workers to split between
    them (EGD-CXR's 885 training images: 8 shards; SIIM-ACR's 3,338: 8; MIMIC-CXR: ~377)."""
    if examples == 0:
        return 0
    if requested is not None:
        return max(1, min(requested, examples))
    return max(1, math.ceil(examples / 1000), min(MIN_PARALLEL_SHARDS, examples // 100))


def shard_name(split: str, index: int, count: int, compression: str | None) -> str:
    suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
    return f"{split}-{index:05d}-of-{count:05d}{suffix}"


def is_ours(name: str) -> bool:
    """A file name a conversion writes: a shard, the manifest, or a temporary of either."""
    name = name.removesuffix(PARTIAL)
    return name == MANIFEST or SHARD_NAME.fullmatch(name) is not None


def prepare_out(out: str) -> None:
    """Make ``out`` ready for a conversion (see the module docstring).

    Raises:
        InputError: ``out`` holds files or folders that a conversion did not write.
    """
    os.makedirs(out, exist_ok=True)
    foreign = sorted(name for name in os.listdir(out) if not is_ours(name))
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise InputError(out, f"holds {len(foreign)} entries a conversion did not write "
                              f"({shown}); convert into an empty or new folder")
    for name in os.listdir(out):
        if name == MANIFEST or name.endswith(PARTIAL):
            os.remove(os.path.join(out, name))


def shard_layout(split: str, items: Sequence, *, shards: int | None,
                 compression: str | None) -> list[tuple[str, list]]:
    """``[(shard name, its items)]`` for one split's items in record order: contiguous runs
    of (within one) equal length. Both runners (local and Beam) write exactly this layout."""
    count = shard_count(len(items), shards)
    bounds = np.cumsum([0, *allocate(len(items), [1] * count)]) if count else [0]
    return [(shard_name(split, i, count, compression), list(items[start:stop]))
            for i, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))]


def write_shard(out: str, name: str, examples, compression: str | None) -> dict:
    """Writes serialized examples, in order, to the shard ``name`` (atomically); returns its
    :func:`shard_checksum`."""
    import tensorflow as tf

    final = os.path.join(out, name)
    temporary = final + PARTIAL
    with tf.io.TFRecordWriter(temporary, tf.io.TFRecordOptions(
            compression_type=compression or "")) as writer:
        for example in examples:
            writer.write(example)
    os.replace(temporary, final)
    return shard_checksum(final)


def write_shards(out: str, split: str, examples: Sequence[bytes], *, shards: int | None,
                 compression: str | None) -> dict[str, dict]:
    """Write the serialized examples of one split (:func:`shard_layout`); returns
    ``{shard name: its checksum}`` in shard order."""
    return {name: write_shard(out, name, chunk, compression) for name, chunk in
            shard_layout(split, examples, shards=shards, compression=compression)}


def split_counts(members: Mapping[str, Sequence], label: Callable[[object], int],
                 classes: Sequence[str]) -> dict:
    """``{split: {"total": n, class name: n, ...}}`` as the manifest records them."""
    counts = {}
    for split in SPLITS:
        labels = [label(i) for i in members[split]]
        counts[split] = {"total": len(labels),
                         **{name: labels.count(c) for c, name in enumerate(classes)}}
    return counts


def remove_stale_shards(out: str, written) -> None:
    """Removes every shard file in ``out`` that this conversion did not write."""
    for name in os.listdir(out):
        if SHARD_NAME.fullmatch(name) and name not in written:
            os.remove(os.path.join(out, name))


def write_splits(out: str, members: Mapping[str, Sequence], example: Callable[[object], bytes],
                 label: Callable[[object], int], classes: Sequence[str], *,
                 shards: int | None, compression: str | None) -> tuple[dict, dict, dict]:
    """Write every split's examples; returns (counts per split and class, shard names per
    split, ``{shard name: {"bytes", "sha256"}}``).

    ``members[split]`` lists the split's items in record order; ``example(item)`` serializes
    one and ``label(item)`` gives its class index. Shards of an earlier conversion that this
    one did not write are removed at the end.
    """
    prepare_out(out)
    written = {split: write_shards(out, split, [example(i) for i in members[split]],
                                   shards=shards, compression=compression) for split in SPLITS}
    checksums = {name: checksum for split in SPLITS for name, checksum in written[split].items()}
    remove_stale_shards(out, checksums)
    names = {split: list(written[split]) for split in SPLITS}
    return split_counts(members, label, classes), names, dict(sorted(checksums.items()))


def shard_checksum(path: str) -> dict:
    """What the manifest records of a shard: its size in bytes and its SHA-256."""
    return {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}


def write_manifest(out: str, manifest: Mapping) -> str:
    """Write ``manifest.json`` atomically, keys sorted, so equal content gives equal bytes."""
    final = os.path.join(out, MANIFEST)
    with open(final + PARTIAL, "w") as handle:
        json.dump({"tool": f"cxrkit {__version__}", **manifest}, handle, indent=2,
                  sort_keys=True)
        handle.write("\n")
    os.replace(final + PARTIAL, final)
    return final


def png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 or uint16 image (OpenCV's encoder, deterministic)."""
    import cv2

    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return encoded.tobytes()


def bytes_feature(value: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def int64_feature(value: int):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def serialize(features: Mapping[str, object]) -> bytes:
    """A ``tf.train.Example`` from bytes / int values, serialized."""
    import tensorflow as tf

    feature = {
        key: int64_feature(value) if isinstance(value, int | np.integer) else bytes_feature(value)
        for key, value in features.items()
    }
    # deterministic=True writes the feature map in key order; without it the order (and so the
    # shard bytes) can differ between two runs that hold the same data.
    message = tf.train.Example(features=tf.train.Features(feature=feature))
    return message.SerializeToString(deterministic=True)
