"""Raw SIIM-ACR (DICOMs + run-length table) to sharded TFRecords, as the MLMI 2023 study used it.

Input: ``images`` is searched at any depth for DICOMs (``.dcm``) and for the PNG/JPEG
conversions most users download (``<ImageId>.png|.jpg|.jpeg``), mixed freely. A DICOM's image
id is its SOPInstanceUID, a PNG/JPEG's its file name without the suffix. An image file with no
row in the table is skipped and listed by name; table rows whose image is not there (the
normal case when a part of the set is converted) are only counted (``absent_images`` in the
manifest), since listing thousands of them would bury the real problems.

Per image: the file is read (a DICOM's MONOCHROME1 inverted, JPEG Baseline decoded; an RGB
PNG/JPEG made grey, a 16-bit PNG kept at its depth) and stored as the
``siim-acr`` convention defines (:class:`cxrkit.preprocessing.SiimAcrPreprocessing`: 8 bits
over its own range, CLAHE at native resolution, area resize to ``size``); the mask is the union
of all the image's run-length rows, resized with nearest neighbour. The per-image z-score of
the study is the convention's ``normalise``, applied by the reader (:func:`cxrkit.data.load`),
so records keep viewable 8-bit PNGs.

Selection (:func:`split_plan` shows the plan without images): ``subset="balanced"`` (the
default) keeps every usable positive and as many negatives, drawn at random (seeded): 5,338
images on the real table, since the thesis' 7,200 do not fit it (docs/study.md);
``subset=N`` draws N images, half with a pneumothorax; an image that fails to decode is
replaced by the next of its class; ``None`` keeps every usable image. Splits are stratified by
class and every kept image lands in exactly one: by default 1,000 validation and 1,000 test
images, train on the rest (3,338 on the real table, each split balanced).

Records: ``image`` (PNG, uint8, 1 channel), ``mask`` (PNG, uint8, 0 or 255), ``label`` (int64,
1 = pneumothorax), ``image_id`` (bytes, the SOP Instance UID). Patient attributes of the DICOM
never reach a record or the manifest.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrkit.errors import CxrkitError, InputError
from cxrkit.files import sha256_file
from cxrkit.preprocessing import (
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    SiimAcrPreprocessing,
    read_dicom_uid,
    read_image,
)
from data_prep.pipeline import SkipLog, run_jobs
from data_prep.records import (
    SPLITS,
    Converted,
    Encoded,
    check_size,
    png,
    serialize,
    stratified_split,
    write_manifest,
    write_splits,
)
from data_prep.siim_acr.rle import RLEError, rle_decode
from data_prep.siim_acr.rle_csv import read_rle_csv

CLASSES = ("healthy", "pneumothorax")
BALANCED = "balanced"  # every positive image and as many negatives: 5,338 on the real table
STUDY_HELD_OUT = 1000  # validation and test images each (Table 3.1's recalls: 500 positives)
STUDY_SPLIT = (3338, 1000, 1000)  # the plan on the real table, as proportions for small sets


@dataclass(frozen=True)
class _Job:
    path: str
    source: str  # the path relative to --images, as reported
    regions: tuple[str, ...]
    preprocessing: SiimAcrPreprocessing


def _identify(path: str) -> tuple[str, str]:
    """Worker: (image id, "") of an image file, or ("", the reason it cannot be used)."""
    if not path.lower().endswith(DICOM_SUFFIXES):
        return Path(path).stem, ""
    try:
        return read_dicom_uid(path), ""
    except InputError as err:
        return "", err.problem


def _identify_failed(reason: str) -> tuple[str, str]:
    return "", reason


def _prepare(job: _Job) -> Encoded | str:
    """Worker: the encoded image and mask, or the reason to skip the image."""
    try:
        pixels = read_image(job.path)
    except InputError as err:
        return err.problem
    rows, cols = pixels.shape
    mask = np.zeros((rows, cols), bool)
    for rle in job.regions:
        try:
            mask |= rle_decode(rle, rows, cols)
        except RLEError as err:
            return f"mask row does not fit the {rows}x{cols} image: {err}"
    pre = job.preprocessing
    return Encoded(png(pre.record_image(pixels)), png(pre.record_mask(mask)),
                   sha256_file(job.path))


def parse_split(text: str | None, subset_size: int | None) -> tuple[float, ...]:
    """Split weights from ``"3338,1000,1000"`` (counts) or ``"0.7,0.15,0.15"`` (fractions).

    ``None`` is the study's plan: 1,000 validation and 1,000 test images, train on the rest,
    when the rest is at least as large as those two together; smaller sets take the plan's
    proportions on the real table (3,338 / 1,000 / 1,000). Counts given explicitly must add
    up to the number of images converted (not checked when ``subset_size`` is ``None``: the
    early check of the text alone, before any work).
    """
    if text is None:
        held_out = 2 * STUDY_HELD_OUT
        if subset_size is not None and subset_size - held_out >= held_out:
            return (subset_size - held_out, STUDY_HELD_OUT, STUDY_HELD_OUT)
        return STUDY_SPLIT
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError("--split", f"{text!r} is not a comma-separated list of numbers") from None
    if len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values) \
            or sum(values) <= 0:
        raise InputError("--split", f"{text!r}: expected three non-negative train,validation,"
                                    "test values")
    if all(v <= 1 for v in values):
        if abs(sum(values) - 1) > 1e-6:
            raise InputError("--split", f"fractions {text!r} add up to {sum(values)}, not 1")
        return values
    if subset_size is not None and sum(values) != subset_size:
        raise InputError("--split", f"counts {text!r} add up to {int(sum(values))}, but "
                                    f"{subset_size} images are converted")
    return values


def subset_quota(subset: int | str | None, available: dict[int, int]) -> dict[int, int | None]:
    """Images to keep per class (0 healthy, 1 pneumothorax) for ``--subset``.

    ``"balanced"`` (the default): every positive and as many negatives (the larger class is
    cut to the smaller); ``N``: N / 2 of each (the odd one healthy); ``None``: all (``None``
    per class). Raises InputError with the available counts when the data cannot fill it.
    """
    if subset is None:
        return {0: None, 1: None}
    if subset == BALANCED:
        smaller = min(available[0], available[1])
        if smaller == 0:
            raise InputError("--subset", f"a balanced subset needs both classes; the data "
                                         f"holds {available[1]} pneumothorax and "
                                         f"{available[0]} healthy images")
        return {0: smaller, 1: smaller}
    quota = {1: subset // 2, 0: subset - subset // 2}
    if any(available[c] < quota[c] for c in (0, 1)):
        raise InputError("--subset", f"{subset} needs {quota[1]} pneumothorax and {quota[0]} "
                                     f"healthy images; the data holds {available[1]} and "
                                     f"{available[0]} (the largest balanced subset: "
                                     f"{2 * min(available.values())}, --subset balanced)")
    return quota


def split_plan(labels: dict[str, int], *, subset: int | str | None = BALANCED,
               split: str | None = None, seed: int = 0) -> dict[str, list[str]]:
    """The image ids of each split that a conversion of readable images ``labels`` (id ->
    class) gives: the subset drawn (seeded), then stratified by class. The converter follows
    the same steps, replacing an unreadable image by the next of its class."""
    rng = np.random.default_rng(seed)
    by_class = {c: sorted(i for i, label in labels.items() if label == c) for c in (0, 1)}
    quota = subset_quota(subset, {c: len(v) for c, v in by_class.items()})
    kept = sorted(i for c in (0, 1) for i in _draw(by_class[c], rng)[:quota[c]])
    return _splits(kept, [labels[i] for i in kept], split, rng)


def _draw(ids: list[str], rng: np.random.Generator) -> list[str]:
    return [ids[i] for i in rng.permutation(len(ids))]


def _splits(ids: list[str], labels: list[int], split: str | None,
            rng: np.random.Generator) -> dict[str, list[str]]:
    weights = parse_split(split, len(ids))
    parts = stratified_split(labels, weights, rng)
    return {name: [ids[k] for k in part] for name, part in zip(SPLITS, parts, strict=True)}


def convert_siim_acr(
    images: str | os.PathLike,
    rle_csv: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: int = 224,
    subset: int | str | None = BALANCED,
    split: str | None = None,
    shards: int | None = None,
    workers: int = 1,
    seed: int = 0,
    strict: bool = False,
    compression: str | None = None,
    show_progress: bool = False,
    runner: str = "local",
    beam_options: str = "",
) -> dict:
    """Convert raw SIIM-ACR to TFRecords in ``out``; returns the manifest (also written).

    Args:
        subset: ``"balanced"`` (every usable positive and as many negatives), a
            class-balanced number of images, or ``None`` for all usable images.
        split: see :func:`parse_split`.
        shards: shards per split (default: :func:`data_prep.records.shard_count`).
        compression: ``None`` or ``"GZIP"``.
        runner, beam_options: ``"local"`` (``workers`` processes) or ``"beam"``: reading the
            image ids and decoding the images are Apache Beam pipelines (``beam_options``, the
            DirectRunner on ``workers`` processes by default; :mod:`data_prep.beam`).
    """
    images, out = Path(images), os.fspath(out)
    if runner not in ("local", "beam"):
        raise CxrkitError(f"unknown runner {runner!r}; choose local or beam")
    if runner == "beam":
        from data_prep.beam import beam_options as make_options

        pipeline = make_options(beam_options, workers)
    else:
        pipeline = None
    check_size("--size", size)
    parse_split(split, subset)  # a malformed --split fails before any image is read
    preprocessing = SiimAcrPreprocessing(size)
    if not images.is_dir():
        raise InputError(images, "image folder not found")
    skipped = SkipLog(strict)
    table = read_rle_csv(rle_csv)
    for problem in table.problems:
        skipped.add(problem.source, problem.problem)

    paths = sorted(p for p in images.rglob("*") if p.is_file()
                   and p.suffix.lower() in (*DICOM_SUFFIXES, *IMAGE_SUFFIXES))
    if not paths:
        raise InputError(images, "no DICOM, PNG or JPEG image found (searched at any depth)")
    files: dict[str, Path] = {}
    identified = run_jobs(_identify, [os.fspath(p) for p in paths], workers=workers,
                          label="reading image ids", show_progress=show_progress,
                          failed=_identify_failed, beam_options=pipeline)
    for path, (image_id, problem) in zip(paths, identified, strict=True):
        source = str(path.relative_to(images))
        if problem:
            skipped.add(source, problem)
        elif image_id in files:
            skipped.add(source, f"duplicate image id {image_id} (also "
                                f"{files[image_id].relative_to(images)})")
        else:
            files[image_id] = path
    absent = len(set(table.regions) - set(files) - table.bad_images)
    candidates = {0: [], 1: []}
    for image_id, path in files.items():
        if image_id not in table.regions:
            skipped.add(str(path.relative_to(images)),
                        f"image id {image_id} has no row in the mask table (unknown label)")
        elif image_id not in table.bad_images:
            candidates[table.label(image_id)].append(image_id)
    if not candidates[0] + candidates[1]:
        raise InputError(images, f"none of the {len(paths)} image files has a usable row in "
                                 f"{table.path}")

    rng = np.random.default_rng(seed)
    try:
        quota = subset_quota(subset, {c: len(candidates[c]) for c in (0, 1)})
    except InputError as err:
        raise InputError(images, err.problem) from None
    queues = {c: _draw(sorted(candidates[c]), rng) for c in (0, 1)}
    kept: dict[str, Converted] = {}
    while True:
        # Take what each class still needs from its queue; failures are replaced next round.
        wanted = []
        for c in (0, 1):
            have = sum(1 for r in kept.values() if r.label == c)
            need = len(queues[c]) if quota[c] is None else quota[c] - have
            wanted += queues[c][:need]
            queues[c] = queues[c][need:]
        if not wanted:
            break
        jobs = [_Job(str(files[i]), str(files[i].relative_to(images)),
                     tuple(table.regions[i]), preprocessing) for i in wanted]
        for image_id, job, result in zip(wanted, jobs, run_jobs(
                _prepare, jobs, workers=workers, label="SIIM-ACR",
                show_progress=show_progress, beam_options=pipeline), strict=True):
            if isinstance(result, str):
                skipped.add(job.source, result)
            else:
                kept[image_id] = Converted(table.label(image_id), job.source, result)
    if subset == BALANCED:  # unreadable images of the smaller class left no spare: even up
        per_class = {c: [i for i in kept if kept[i].label == c] for c in (0, 1)}
        smaller = min(len(v) for v in per_class.values())
        kept = {i: kept[i] for c in (0, 1) for i in per_class[c][:smaller]}
    elif subset is not None and len(kept) < subset:
        raise InputError(images, f"only {len(kept)} usable images for --subset {subset} "
                                 "after skipping unreadable ones")

    ids = sorted(kept)
    weights = parse_split(split, len(ids))
    counts, shard_names, checksums = write_splits(
        out, _splits(ids, [kept[i].label for i in ids], split, rng),
        lambda i: serialize({"image": kept[i].encoded.image_png,
                             "mask": kept[i].encoded.target_png,
                             "label": kept[i].label, "image_id": i.encode()}),
        lambda i: kept[i].label, CLASSES, shards=shards, compression=compression)
    manifest = {
        "dataset": "siim-acr",
        "classes": list(CLASSES),
        "preprocessing": preprocessing.get_config(),
        "features": {
            "image": {"encoding": "png", "dtype": "uint8", "shape": [size, size, 1]},
            "mask": {"encoding": "png", "dtype": "uint8", "shape": [size, size, 1],
                     "values": "0 outside, 255 inside the pneumothorax"},
            "label": {"dtype": "int64", "values": dict(enumerate(CLASSES))},
            "image_id": {"dtype": "bytes"},
        },
        "compression": compression,
        "counts": counts,
        "shards": shard_names,
        "shard_checksums": checksums,
        "parameters": {
            "size": size, "subset": subset if subset is not None else "all",
            "split_weights": list(weights), "seed": seed, "shards": shards,
        },
        "sources": {
            "rle_csv": {"name": os.path.basename(table.path), "sha256": sha256_file(table.path)},
            "images": {kept[i].source: kept[i].encoded.sha256 for i in ids},
        },
        "absent_images": {
            "count": absent,
            "note": "images of the mask table with no file under the image folder: not "
                    "converted (normal when converting part of the set)"},
        "skipped": [item.as_dict() for item in skipped.items],
    }
    write_manifest(out, manifest)
    return manifest
