"""EGD-CXR gaze tables (``eye_gaze.csv``, ``fixations.csv``): one row's parse, whole tables.

A row is usable when DICOM_ID is there and X_ORIGINAL, Y_ORIGINAL and FPOGD are finite numbers
with FPOGD >= 0 (gaze off the image is usable here: the heatmap drops it, as the study does).
A NaN or negative duration would otherwise give an all-zero or an inverted duration-weighted
map. ``Time (in secs)``, when the table has it, feeds GazeGNN's dwell map.

Both converters' runners parse rows with :meth:`GazeColumns.parse` and build an image's points
with :func:`gaze_of`, which orders them by time (then position and duration): the local runner
reads the table in file order, a Beam pipeline gets each image's rows in no particular order,
and both must give the same maps (the dwell map's "time since the previous fixation" depends
on the order; the tables list each image's fixations in time order, so this is their order).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrkit.errors import CxrkitError, InputError
from data_prep.egd_cxr.heatmap import dwell_map
from data_prep.tables import open_table

GAZE_COLUMNS = ("DICOM_ID", "X_ORIGINAL", "Y_ORIGINAL", "FPOGD")
TIME_COLUMN = "Time (in secs)"

Point = tuple[float, float, float, float]  # x, y, duration, time (NaN when untimed)


@dataclass(frozen=True)
class Gaze:
    x: np.ndarray
    y: np.ndarray
    duration: np.ndarray
    time: np.ndarray  # "Time (in secs)" of each row, NaN when the table has no such column


def gaze_of(points: list[Point]) -> Gaze:
    """An image's points in time order (untimed last; ties by x, y, duration)."""
    ordered = sorted(points, key=lambda p: (math.isnan(p[3]), 0.0 if math.isnan(p[3]) else p[3],
                                            p[0], p[1], p[2]))
    return Gaze(*np.array(ordered, dtype=np.float64).reshape(-1, 4).T)


@dataclass(frozen=True)
class GazeColumns:
    """Where a table's columns are (from its header)."""

    indexes: tuple[int, int, int, int]  # DICOM_ID, X_ORIGINAL, Y_ORIGINAL, FPOGD
    time: int | None  # "Time (in secs)"

    @classmethod
    def from_header(cls, header: list[str], path) -> GazeColumns:
        header = [name.strip() for name in header]
        missing = [n for n in GAZE_COLUMNS if n not in header]
        if missing:
            raise InputError(path, f"gaze table lacks column(s) {', '.join(missing)}")
        return cls(tuple(header.index(n) for n in GAZE_COLUMNS),
                   header.index(TIME_COLUMN) if TIME_COLUMN in header else None)

    @property
    def timed(self) -> bool:
        return self.time is not None

    def parse(self, row: list[str]) -> tuple[str, Point | None] | None:
        """``(dicom_id, point)`` for a usable row, ``(dicom_id, None)`` for a dropped one,
        ``("", None)`` for a row with content but no DICOM_ID, ``None`` for an empty row."""
        first = self.indexes[0]
        dicom_id = row[first].strip() if len(row) > first else ""
        if not dicom_id:
            return ("", None) if any(cell.strip() for cell in row) else None
        try:
            x, y, d = (float(row[c]) for c in self.indexes[1:])
        except (IndexError, ValueError):
            return dicom_id, None
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(d) and d >= 0):
            return dicom_id, None
        try:
            time = float(row[self.time]) if self.time is not None else math.nan
        except (IndexError, ValueError):
            time = math.nan  # a fixation without a time only leaves GazeGNN's dwell map
        return dicom_id, (x, y, d, time)


def read_header(path: str | os.PathLike) -> GazeColumns:
    """The columns of a gaze table, from its first line only."""
    with open_table(path, "the gaze table") as handle:
        return GazeColumns.from_header(next(csv.reader(handle), []), path)


@dataclass
class GazeIndex:
    """What planning a conversion needs of a gaze table: the DICOM ids with usable rows, the
    dropped rows per id, the rows without an id, and whether the table is timed."""

    usable: set[str]
    dropped: dict[str, int]  # dicom id -> rows with missing, non-finite or negative values
    unattributed: int  # rows with content but no DICOM_ID
    timed: bool = False  # the table has a "Time (in secs)" column (GazeGNN's dwell map)

    def summary(self) -> dict:
        """What the manifest records of the dropped rows."""
        return {"total": sum(self.dropped.values()) + self.unattributed,
                "per_image": dict(sorted(self.dropped.items())),
                "without_dicom_id": self.unattributed,
                "rule": "dropped: a missing, non-numeric or non-finite X_ORIGINAL, "
                        "Y_ORIGINAL or FPOGD, or a negative FPOGD"}


@dataclass
class GazeTable:
    """A whole gaze table in memory: the usable points per DICOM id and its index."""

    points: dict[str, Gaze]
    index: GazeIndex


def read_gaze(path: str | os.PathLike) -> GazeTable:
    """Gaze points per DICOM id from ``eye_gaze.csv`` or ``fixations.csv``."""
    points: dict[str, list[Point]] = {}
    dropped: dict[str, int] = {}
    unattributed = 0
    with open_table(path, "the gaze table") as handle:
        reader = csv.reader(handle)
        columns = GazeColumns.from_header(next(reader, []), path)
        for row in reader:
            parsed = columns.parse(row)
            if parsed is None:
                continue
            dicom_id, point = parsed
            if not dicom_id:
                unattributed += 1
            elif point is None:
                dropped[dicom_id] = dropped.get(dicom_id, 0) + 1
            else:
                points.setdefault(dicom_id, []).append(point)
    return GazeTable({k: gaze_of(v) for k, v in points.items()},
                     GazeIndex(set(points), dropped, unattributed, columns.timed))


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
    if not table.index.timed:
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
