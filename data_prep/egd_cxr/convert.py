"""Raw EGD-CXR (master sheet, gaze table, MIMIC-CXR DICOMs) to sharded TFRecords.

Per image (``master_sheet.csv`` row): the DICOM at ``<images>/<path>`` is read and stored as
the ``egd-cxr`` convention defines (:class:`cxrkit.preprocessing.EgdCxrPreprocessing`: centred
on the authors' fixed 3200 x 2560 canvas, or scaled to fit (``placement``), resampled to
``target``, 640 x 512 by default, min-max scaled to [0, 1] per image, 8-bit PNG). The static
gaze heatmap comes from the raw 60 Hz samples (``eye_gaze.csv``, the 2024 study's choice) or
from ``fixations.csv``, points weighted by count or by fixation duration, blurred with
``sigma`` original pixels (default 75.5, the study's 501-pixel kernel), mapped with the same
placement and resample as the image and normalised to [0, 1]
(:mod:`data_prep.egd_cxr.heatmap`); it is stored as a 16-bit PNG (value / 65535). Label:
``Normal`` 0, ``CHF`` 1, ``pneumonia`` 2 from the one-hot columns.

Split: ``test`` random images (the paper: 100), ``val`` more for validation (by default about
10 % of the rest: 98 of 983, as the authors' code validates on 10 %), the rest train; whole
patients are drawn, so a patient never spans two splits. The split is decided once, from the
master-sheet rows that pass the table checks, before any image is read; an image that then
fails to decode leaves its split one smaller (so a broken file never moves other images
between splits, and every runner decides alike).

Runners: ``"local"`` decodes on ``workers`` processes; ``"beam"`` runs the same per-image work
as an Apache Beam pipeline that joins each image to its gaze rows by DICOM id and writes the
shards itself (:mod:`data_prep.beam`); both write byte-identical records and manifests.

Records: ``image`` (PNG uint8), ``heatmap`` (PNG uint16), ``label`` (int64), ``image_id`` (bytes,
the dicom_id), ``patient_id`` (bytes, the de-identified MIMIC subject id), and ``gaze_dwell``
(PNG uint16: GazeGNN's dwell-time input, :func:`data_prep.egd_cxr.heatmap.dwell_map`) when the
gaze table has a ``Time (in secs)`` column. No DICOM attribute is
copied into a record.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

from cxrkit.errors import CxrkitError, InputError
from cxrkit.files import sha256_file
from cxrkit.preprocessing import STUDY_CANVAS, EgdCxrPreprocessing, read_dicom
from data_prep.egd_cxr.columns import DIAGNOSES
from data_prep.egd_cxr.gaze_table import Gaze, GazeIndex, read_gaze
from data_prep.egd_cxr.heatmap import STUDY_SIGMA, TARGET, dwell_map, gaze_heatmap
from data_prep.pipeline import SkipLog, run_jobs
from data_prep.records import (
    SPLITS,
    Encoded,
    check_size,
    png,
    serialize,
    split_counts,
    write_manifest,
    write_splits,
)
from data_prep.tables import open_table

REQUIRED = ("dicom_id", "path", "patient_id", *DIAGNOSES)
VALIDATION_SHARE = 0.1  # default validation split: of the images left after the test split


def _label(row: dict) -> tuple[int | None, str]:
    values = {}
    for name in DIAGNOSES:
        text = (row.get(name) or "0").strip()
        try:
            values[name] = float(text)
        except ValueError:
            return None, f"label column {name} holds {text!r}"
    ones = [n for n in DIAGNOSES if values[n] == 1]
    if len(ones) == 1 and all(values[n] in (0, 1) for n in DIAGNOSES):
        return DIAGNOSES.index(ones[0]), ""
    shown = ", ".join(f"{n}={values[n]:g}" for n in DIAGNOSES)
    return None, f"not exactly one of Normal/CHF/pneumonia set ({shown})"


@dataclass(frozen=True)
class _Job:
    path: str
    source: str
    gaze: Gaze
    weight: str
    sigma: float
    preprocessing: EgdCxrPreprocessing
    dwell: bool  # also store GazeGNN's dwell map


def _prepare(job: _Job) -> Encoded | str:
    """Worker: the encoded image and 16-bit heatmap, or the reason to skip the image."""
    try:
        pixels = read_dicom(job.path)
    except InputError as err:
        return err.problem
    weights = job.gaze.duration if job.weight == "duration" else None
    geometry = job.preprocessing.geometry(pixels.shape)
    try:
        heat = gaze_heatmap(job.gaze.x, job.gaze.y, weights, geometry, sigma=job.sigma)
    except ValueError as err:
        return str(err)
    scale = job.preprocessing.target_scale

    def as_png(values):
        return png(np.round(values * scale).astype(job.preprocessing.target_dtype))

    extra = ({"gaze_dwell": as_png(dwell_map(job.gaze.x, job.gaze.y, job.gaze.time, geometry))}
             if job.dwell else {})
    return Encoded(png(job.preprocessing.record_image(pixels)), as_png(heat),
                   sha256_file(job.path), extra)


def _patient_split(patients: list[str], sizes: tuple[int, int],
                   rng: np.random.Generator) -> list[set[str]]:
    """Draw whole patients for test and validation until each reaches its image count."""
    counts: dict[str, int] = {}
    for p in patients:
        counts[p] = counts.get(p, 0) + 1
    unique = list(counts)
    order = [unique[i] for i in rng.permutation(len(unique))]
    chosen: list[set[str]] = []
    for size in sizes:
        group, total = set(), 0
        for patient in order:
            if total + counts[patient] <= size:
                group.add(patient)
                total += counts[patient]
        order = [p for p in order if p not in group]
        chosen.append(group)
    return chosen


@dataclass(frozen=True)
class Candidate:
    """A master-sheet row that passed the table checks: an image to convert."""

    dicom_id: str
    path: str  # resolved path of the DICOM
    source: str  # the path relative to --images, as reported
    label: int
    patient_id: str


@dataclass(frozen=True)
class Kept:
    """What the manifest needs of an image that made it into the records."""

    label: int
    source: str
    sha256: str
    patient_id: str


def job_for(candidate: Candidate, gaze: Gaze, *, weight: str, sigma: float,
            preprocessing: EgdCxrPreprocessing, dwell: bool) -> _Job:
    """The worker's job for one image and its gaze points."""
    return _Job(candidate.path, candidate.source, gaze, weight, sigma, preprocessing, dwell)


@dataclass
class Plan:
    """Everything decided before any image is read (both runners start from it)."""

    preprocessing: EgdCxrPreprocessing
    skipped: SkipLog
    candidates: list[Candidate]
    members: dict[str, list[str]]  # split -> dicom ids, sorted
    val: int
    gaze: GazeIndex

    def kept_members(self, kept) -> dict[str, list[str]]:
        """The splits without the images that failed."""
        return {split: [i for i in self.members[split] if i in kept] for split in SPLITS}


def example(dicom_id: str, label: int, patient_id: str, encoded: Encoded) -> bytes:
    """One record, serialized."""
    return serialize({"image": encoded.image_png, "heatmap": encoded.target_png,
                      "label": label, "image_id": dicom_id.encode(),
                      "patient_id": patient_id.encode(), **encoded.extra})


def plan_conversion(master_sheet: str, gaze_table: str, gaze: GazeIndex, images: str, *,
                    target, placement, canvas, weight, test, val, seed, strict) -> Plan:
    """Checks the options and the master sheet, lists the images to convert (skipping rows
    with a bad label, a duplicate id, no usable gaze or a path outside ``images``) and draws
    the patient-level splits."""
    if weight not in ("count", "duration"):
        raise ValueError(f"weight must be 'count' or 'duration', got {weight!r}")
    if not os.path.isdir(images):
        raise InputError(images, "image folder (the MIMIC-CXR root) not found")
    check_size("--size", *target)
    try:
        preprocessing = EgdCxrPreprocessing(target, placement, canvas)
    except ValueError as err:
        raise CxrkitError(f"--placement/--canvas: {err}") from None
    skipped = SkipLog(strict)
    with open_table(master_sheet, "the master sheet") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(master_sheet, f"missing column(s) {', '.join(missing)}")
        rows = [(reader.line_num, row) for row in reader]
    root = os.path.realpath(images)
    candidates, seen = [], set()
    for line, row in rows:
        where = f"{master_sheet}:{line}"
        dicom_id = (row["dicom_id"] or "").strip()
        if dicom_id in seen:
            skipped.add(where, f"duplicate dicom_id {dicom_id}")
            continue
        seen.add(dicom_id)
        label, why = _label(row)
        if label is None:
            skipped.add(where, f"image {dicom_id}: {why}")
            continue
        if dicom_id not in gaze.usable:
            bad = gaze.dropped.get(dicom_id, 0)
            skipped.add(where, f"image {dicom_id}: " + (
                f"all {bad} of its gaze rows in {gaze_table} have unusable values"
                if bad else f"no gaze recorded for it in {gaze_table}"))
            continue
        relpath = (row["path"] or "").strip()
        path = os.path.realpath(os.path.join(images, relpath))
        if os.path.commonpath([root, path]) != root:
            skipped.add(where, f"image {dicom_id}: path {relpath!r} leaves the --images folder")
            continue
        candidates.append(Candidate(dicom_id, path, relpath, label,
                                    (row["patient_id"] or "").strip()))
    if val is None:
        val = round(VALIDATION_SHARE * max(len(candidates) - test, 0))
    if len(candidates) <= test + val:
        raise InputError(master_sheet, f"{len(candidates)} usable images cannot fill --test "
                                       f"{test} and --val {val} and leave any for training")
    by_id = {c.dicom_id: c for c in candidates}
    ids = sorted(by_id)
    test_patients, val_patients = _patient_split([by_id[i].patient_id for i in ids],
                                                 (test, val), np.random.default_rng(seed))
    members = {
        "train": [i for i in ids if by_id[i].patient_id not in test_patients | val_patients],
        "validation": [i for i in ids if by_id[i].patient_id in val_patients],
        "test": [i for i in ids if by_id[i].patient_id in test_patients],
    }
    return Plan(preprocessing, skipped, candidates, members, val, gaze)


def convert_egd_cxr(
    master_sheet: str | os.PathLike,
    gaze_table: str | os.PathLike,
    images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    gaze_source: str = "eye_gaze",
    target: tuple[int, int] = TARGET,
    placement: str = "centre",
    canvas: tuple[int, int] = STUDY_CANVAS,
    sigma: float = STUDY_SIGMA,
    weight: str = "count",
    test: int = 100,
    val: int | None = None,
    shards: int | None = None,
    workers: int = 1,
    seed: int = 0,
    strict: bool = False,
    compression: str | None = None,
    show_progress: bool = False,
    runner: str = "local",
    beam_options: str = "",
) -> dict:
    """Convert raw EGD-CXR to TFRecords in ``out``; returns the manifest (also written).

    Args:
        gaze_source: ``"eye_gaze"`` (raw samples) or ``"fixations"``; names what
            ``gaze_table`` holds, for the manifest.
        placement, canvas: where each image lands on the ``target`` grid
            (:class:`cxrkit.preprocessing.Geometry`): ``"centre"`` on a fixed ``canvas`` of
            native pixels (the authors' code, 3200 x 2560), or ``"fit"``.
        weight: ``"count"`` or ``"duration"`` (fixation duration, FPOGD).
        test, val: images in the test and validation splits (whole patients); ``val=None``
            is about 10 % of the images left after the test split (the authors' code
            validates on 10 %; the thesis names no validation split).
        runner, beam_options: ``"local"`` (``workers`` processes) or ``"beam"`` (an Apache
            Beam pipeline; ``beam_options`` are its command-line pipeline options, the
            DirectRunner on ``workers`` processes by default).
    """
    master_sheet, gaze_table = os.fspath(master_sheet), os.fspath(gaze_table)
    images, out = os.fspath(images), os.fspath(out)
    options = dict(target=target, placement=placement, canvas=canvas, weight=weight, test=test,
                   val=val, seed=seed, strict=strict)
    if runner == "beam":
        from data_prep.beam import beam_options as make_options
        from data_prep.beam import egd_gaze_index, egd_write

        pipeline_options = make_options(beam_options, workers)
        plan = plan_conversion(master_sheet, gaze_table, egd_gaze_index(
            gaze_table, pipeline_options), images, **options)
        kept, failures, shard_names, checksums = egd_write(
            plan, gaze_table, out, weight=weight, sigma=sigma, shards=shards,
            compression=compression, options=pipeline_options)
        for source, reason in failures:
            plan.skipped.add(source, reason)
    elif runner == "local":
        table = read_gaze(gaze_table)
        plan = plan_conversion(master_sheet, gaze_table, table.index, images, **options)
        jobs = [job_for(c, table.points[c.dicom_id], weight=weight, sigma=sigma,
                        preprocessing=plan.preprocessing, dwell=plan.gaze.timed)
                for c in plan.candidates]
        encoded: dict[str, Encoded] = {}
        for candidate, result in zip(plan.candidates, run_jobs(
                _prepare, jobs, workers=workers, label="EGD-CXR", show_progress=show_progress),
                strict=True):
            if isinstance(result, str):
                plan.skipped.add(candidate.source, result)
            else:
                encoded[candidate.dicom_id] = result
        by_id = {c.dicom_id: c for c in plan.candidates}
        kept = {i: Kept(by_id[i].label, by_id[i].source, e.sha256, by_id[i].patient_id)
                for i, e in encoded.items()}
        _, shard_names, checksums = write_splits(
            out, plan.kept_members(kept),
            lambda i: example(i, kept[i].label, kept[i].patient_id, encoded[i]),
            lambda i: kept[i].label, DIAGNOSES, shards=shards, compression=compression)
    else:
        raise CxrkitError(f"unknown runner {runner!r}; choose local or beam")
    return _finish(out, plan, kept, shard_names, checksums, master_sheet=master_sheet,
                   gaze_table=gaze_table, gaze_source=gaze_source, sigma=sigma,
                   shards=shards, compression=compression, **options)


def _finish(out: str, plan: Plan, kept: dict[str, Kept], shard_names, checksums, *,
            master_sheet, gaze_table, gaze_source, target, placement, canvas, sigma, weight,
            test, val, seed, shards, compression, strict) -> dict:
    """Checks what is left and writes the manifest."""
    members = plan.kept_members(kept)
    if not members["train"]:
        raise InputError(master_sheet, "no training image is left after skipping the images "
                                       "that failed (see the messages above)")
    rows_, cols_ = target
    manifest = {
        "dataset": "egd-cxr",
        "classes": list(DIAGNOSES),
        "preprocessing": plan.preprocessing.get_config(),
        "features": {
            "image": {"encoding": "png", "dtype": "uint8", "shape": [rows_, cols_, 1],
                      "values": "min-max scaled per image, x 255"},
            "heatmap": {"encoding": "png", "dtype": "uint16", "shape": [rows_, cols_, 1],
                        "values": "gaze heatmap in [0, 1], x 65535"},
            **({"gaze_dwell": {"encoding": "png", "dtype": "uint16", "shape": [rows_, cols_, 1],
                               "values": "GazeGNN's fixation dwell-time map in [0, 1], x 65535"}}
               if plan.gaze.timed else {}),
            "label": {"dtype": "int64", "values": dict(enumerate(DIAGNOSES))},
            "image_id": {"dtype": "bytes", "values": "dicom_id"},
            "patient_id": {"dtype": "bytes"},
        },
        "compression": compression,
        "counts": split_counts(members, lambda i: kept[i].label, DIAGNOSES),
        "shards": shard_names,
        "shard_checksums": checksums,
        "parameters": {
            "target": list(target), "placement": placement, "canvas": list(canvas),
            "sigma": sigma, "weight": weight,
            "gaze_source": gaze_source, "test": test, "val": plan.val, "seed": seed,
            "shards": shards,
        },
        "sources": {
            "master_sheet": {"name": os.path.basename(master_sheet),
                             "sha256": sha256_file(master_sheet)},
            "gaze": {"name": os.path.basename(gaze_table), "sha256": sha256_file(gaze_table)},
            "images": {kept[i].source: kept[i].sha256 for i in sorted(kept)},
        },
        "gaze_rows_dropped": plan.gaze.summary(),
        "skipped": [item.as_dict() for item in plan.skipped.items],
    }
    write_manifest(out, manifest)
    return manifest
