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
patients are drawn, so a patient never spans two splits.

Records: ``image`` (PNG uint8), ``heatmap`` (PNG uint16), ``label`` (int64), ``image_id`` (bytes,
the dicom_id), ``patient_id`` (bytes, the de-identified MIMIC subject id), and ``gaze_dwell``
(PNG uint16: GazeGNN's dwell-time input, :func:`data_prep.egd_cxr.heatmap.dwell_map`) when the
gaze table has a ``Time (in secs)`` column. No DICOM attribute is
copied into a record.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrkit.errors import CxrkitError, InputError
from cxrkit.files import sha256_file
from cxrkit.preprocessing import STUDY_CANVAS, EgdCxrPreprocessing, read_dicom
from data_prep.egd_cxr.columns import DIAGNOSES
from data_prep.egd_cxr.heatmap import STUDY_SIGMA, TARGET, dwell_map, gaze_heatmap
from data_prep.pipeline import SkipLog, run_jobs
from data_prep.records import (
    Converted,
    Encoded,
    check_size,
    png,
    serialize,
    write_manifest,
    write_splits,
)
from data_prep.tables import open_table

REQUIRED = ("dicom_id", "path", "patient_id", *DIAGNOSES)
VALIDATION_SHARE = 0.1  # default validation split: of the images left after the test split


@dataclass(frozen=True)
class Gaze:
    x: np.ndarray
    y: np.ndarray
    duration: np.ndarray
    time: np.ndarray  # "Time (in secs)" of each row, NaN when the table has no such column


@dataclass
class GazeTable:
    """The usable gaze rows per DICOM id, and a count of the rows dropped.

    A row is usable when DICOM_ID is there and X_ORIGINAL, Y_ORIGINAL and FPOGD are finite
    numbers with FPOGD >= 0 (gaze off the image is usable here: the heatmap drops it, as the
    study does). A NaN or negative duration would otherwise give an all-zero or an inverted
    duration-weighted map.
    """

    points: dict[str, Gaze]
    dropped: dict[str, int]  # dicom id -> rows with missing, non-finite or negative values
    unattributed: int  # rows without a DICOM_ID
    timed: bool = False  # the table has a "Time (in secs)" column (GazeGNN's dwell map)

    def summary(self) -> dict:
        """What the manifest records of the dropped rows."""
        return {"total": sum(self.dropped.values()) + self.unattributed,
                "per_image": dict(sorted(self.dropped.items())),
                "without_dicom_id": self.unattributed,
                "rule": "dropped: a missing, non-numeric or non-finite X_ORIGINAL, "
                        "Y_ORIGINAL or FPOGD, or a negative FPOGD"}


GAZE_COLUMNS = ("DICOM_ID", "X_ORIGINAL", "Y_ORIGINAL", "FPOGD")
TIME_COLUMN = "Time (in secs)"


def read_gaze(path: str) -> GazeTable:
    """Gaze points per DICOM id from ``eye_gaze.csv`` or ``fixations.csv`` (see GazeTable)."""
    points: dict[str, list[tuple[float, float, float, float]]] = {}
    dropped: dict[str, int] = {}
    unattributed = 0
    with open_table(path, "the gaze table") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        missing = [n for n in GAZE_COLUMNS if n not in header]
        if missing:
            raise InputError(path, f"gaze table lacks column(s) {', '.join(missing)}")
        cols = [header.index(n) for n in GAZE_COLUMNS]
        timed = TIME_COLUMN in header
        time_col = header.index(TIME_COLUMN) if timed else None
        for row in reader:
            dicom_id = row[cols[0]].strip() if len(row) > cols[0] else ""
            if not dicom_id:
                unattributed += any(cell.strip() for cell in row)
                continue
            try:
                x, y, d = (float(row[c]) for c in cols[1:])
            except (IndexError, ValueError):
                x = y = d = math.nan
            if math.isfinite(x) and math.isfinite(y) and math.isfinite(d) and d >= 0:
                points.setdefault(dicom_id, []).append((x, y, d, _number(row, time_col)))
            else:
                dropped[dicom_id] = dropped.get(dicom_id, 0) + 1
    return GazeTable({k: Gaze(*np.array(v, dtype=np.float64).T) for k, v in points.items()},
                     dropped, unattributed, timed)


def dwell_source(path: str | os.PathLike, preprocessing):
    """GazeGNN's gaze input for new images, from a gaze table (``cxrkit predict --gaze``).

    Returns a :data:`cxrkit.inference.GazeSource`: for an image file and its raw (rows, cols),
    the dwell map of the rows whose DICOM_ID is the file's name without its extension, on
    ``preprocessing``'s grid (an ``egd-cxr`` convention) and quantised to 16 bits as the
    converter stores ``gaze_dwell`` — what the model saw in training.
    """
    if not hasattr(preprocessing, "geometry"):
        raise CxrkitError(f"a gaze input needs the egd-cxr convention, not {preprocessing.name}")
    table = read_gaze(os.fspath(path))
    if not table.timed:
        raise InputError(path, f"gaze table has no {TIME_COLUMN!r} column; GazeGNN's dwell "
                               "map needs it (EGD-CXR's fixations.csv and eye_gaze.csv have it)")
    scale = preprocessing.target_scale

    def source(image: Path, shape: tuple) -> np.ndarray:
        gaze = table.points.get(Path(image).stem)
        if gaze is None:
            raise InputError(image, f"no usable gaze rows for DICOM_ID {Path(image).stem!r} "
                                    f"in {path}")
        values = dwell_map(gaze.x, gaze.y, gaze.time, preprocessing.geometry(shape))
        return (np.round(values * scale) / scale).astype(np.float32)

    return source


def _number(row: list[str], column: int | None) -> float:
    """The cell as a float; NaN when absent or not a number (a fixation without a time only
    leaves GazeGNN's dwell map)."""
    try:
        return float(row[column]) if column is not None else math.nan
    except (IndexError, ValueError):
        return math.nan


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
    try:
        heat = gaze_heatmap(job.gaze.x, job.gaze.y, weights,
                            job.preprocessing.geometry(pixels.shape), sigma=job.sigma)
    except ValueError as err:
        return str(err)
    scale = job.preprocessing.target_scale
    geometry = job.preprocessing.geometry(pixels.shape)

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
    """
    master_sheet, gaze_table = os.fspath(master_sheet), os.fspath(gaze_table)
    images, out = os.fspath(images), os.fspath(out)
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
    gaze = read_gaze(gaze_table)
    root = os.path.realpath(images)

    jobs, meta, seen = [], [], set()
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
        if dicom_id not in gaze.points:
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
        jobs.append(_Job(path, relpath, gaze.points[dicom_id], weight, sigma, preprocessing,
                         gaze.timed))
        meta.append((dicom_id, label, (row["patient_id"] or "").strip()))

    kept: dict[str, Converted] = {}
    results = run_jobs(_prepare, jobs, workers=workers, label="EGD-CXR",
                       show_progress=show_progress)
    for job, (dicom_id, label, patient), result in zip(jobs, meta, results, strict=True):
        if isinstance(result, str):
            skipped.add(job.source, result)
        else:
            kept[dicom_id] = Converted(label, job.source, result, patient)
    if val is None:
        val = round(VALIDATION_SHARE * max(len(kept) - test, 0))
    if len(kept) <= test + val:
        raise InputError(master_sheet, f"{len(kept)} usable images cannot fill --test {test} "
                                       f"and --val {val} and leave any for training")

    ids = sorted(kept)
    rng = np.random.default_rng(seed)
    test_patients, val_patients = _patient_split([kept[i].patient_id for i in ids],
                                                 (test, val), rng)
    members = {
        "train": [i for i in ids if kept[i].patient_id not in test_patients | val_patients],
        "validation": [i for i in ids if kept[i].patient_id in val_patients],
        "test": [i for i in ids if kept[i].patient_id in test_patients],
    }
    counts, shard_names, checksums = write_splits(
        out, members,
        lambda i: serialize({"image": kept[i].encoded.image_png,
                             "heatmap": kept[i].encoded.target_png, "label": kept[i].label,
                             "image_id": i.encode(), "patient_id": kept[i].patient_id.encode(),
                             **kept[i].encoded.extra}),
        lambda i: kept[i].label, DIAGNOSES, shards=shards, compression=compression)
    rows_, cols_ = target
    manifest = {
        "dataset": "egd-cxr",
        "classes": list(DIAGNOSES),
        "preprocessing": preprocessing.get_config(),
        "features": {
            "image": {"encoding": "png", "dtype": "uint8", "shape": [rows_, cols_, 1],
                      "values": "min-max scaled per image, x 255"},
            "heatmap": {"encoding": "png", "dtype": "uint16", "shape": [rows_, cols_, 1],
                        "values": "gaze heatmap in [0, 1], x 65535"},
            **({"gaze_dwell": {"encoding": "png", "dtype": "uint16", "shape": [rows_, cols_, 1],
                               "values": "GazeGNN's fixation dwell-time map in [0, 1], x 65535"}}
               if gaze.timed else {}),
            "label": {"dtype": "int64", "values": dict(enumerate(DIAGNOSES))},
            "image_id": {"dtype": "bytes", "values": "dicom_id"},
            "patient_id": {"dtype": "bytes"},
        },
        "compression": compression,
        "counts": counts,
        "shards": shard_names,
        "shard_checksums": checksums,
        "parameters": {
            "target": list(target), "placement": placement, "canvas": list(canvas),
            "sigma": sigma, "weight": weight,
            "gaze_source": gaze_source, "test": test, "val": val, "seed": seed,
            "shards": shards,
        },
        "sources": {
            "master_sheet": {"name": os.path.basename(master_sheet),
                             "sha256": sha256_file(master_sheet)},
            "gaze": {"name": os.path.basename(gaze_table), "sha256": sha256_file(gaze_table)},
            "images": {kept[i].source: kept[i].encoded.sha256 for i in ids},
        },
        "gaze_rows_dropped": gaze.summary(),
        "skipped": [item.as_dict() for item in skipped.items],
    }
    write_manifest(out, manifest)
    return manifest
