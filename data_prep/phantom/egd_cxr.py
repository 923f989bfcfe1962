"""A phantom EGD-CXR set: MIMIC-CXR style DICOMs, the master sheet and radiologist gaze.

Layout written under ``out`` (``out`` plays both the EGD-CXR folder and the MIMIC-CXR root that
``master_sheet.csv``'s ``path`` column is relative to)::

    master_sheet.csv     the 59 real columns in the real order
    fixations.csv        one row per fixation (Gazepoint columns)
    eye_gaze.csv         one row per 60 Hz gaze sample (same columns)
    files/pXX/p<8 digits>/s<8 digits>/<dicom_id>.dcm

Classes Normal / CHF / pneumonia come in equal shares (:mod:`data_prep.phantom.anatomy` draws
an enlarged heart with perihilar haze for CHF and a focal opacity for pneumonia). A simulated
reader fixates mostly on the finding in abnormal cases; otherwise it searches systematically
over the six lung zones and the heart (:func:`_fixation_points`), so the gaze follows the
picture as a trained reader's would. A few fixations land on the screen around the image, so
their original-pixel coordinates are negative or past the image edge, as in the real files.
Images are portrait, about 2-3k pixels per side by default, 16-bit with 12 bits stored,
MONOCHROME2. Some patients have two studies, so patient-level splits have something to
respect. Each file carries fake
patient-identifying attributes for privacy checks downstream.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np
from pydicom.uid import DigitalXRayImageStorageForPresentation, generate_uid

from data_prep.egd_cxr.columns import (
    CHEXPERT_LABELS,
    DIAGNOSES,
    EYE_GAZE,
    FIXATIONS,
    MASTER_SHEET,
    REPORT_FINDINGS,
    SCREEN,
)
from data_prep.phantom.anatomy import Phantom, render_chest
from data_prep.phantom.dicom_writer import write_dicom
from data_prep.progress import track

FINDING_OF = {"Normal": "none", "CHF": "chf", "pneumonia": "pneumonia"}
_DX = {
    "Normal": (("Chest pain, unspecified", "R07.9"),),
    "CHF": (("Heart failure, unspecified", "I50.9"), ("Hypertension", "I10")),
    "pneumonia": (("Pneumonia, unspecified organism", "J18.9"), ("Fever, unspecified", "R50.9")),
}
_REPORT_POSITIVE = {
    "Normal": {"normal_anatomically"},
    "CHF": {"enlarged_cardiac_silhouette", "pulmonary_edema__hazy_opacity",
            "vascular_redistribution"},
    "pneumonia": {"consolidation",
                  "not_otherwise_specified_opacity___pleural__parenchymal_opacity__"},
}
_CHEXPERT_POSITIVE = {
    "Normal": {"no_finding__chx"},
    "CHF": {"cardiomegaly__chx", "edema__chx", "enlarged_cardiomediastinum__chx"},
    "pneumonia": {"pneumonia__chx", "consolidation__chx", "lung_opacity__chx"},
}
_INDICATION = {
    "Normal": "___M with chest pain, r/o acute process.\nEval for infiltrate",
    "CHF": "___F with CHF, shortness of breath // ?Pulmonary edema",
    "pneumonia": "___M with fever, cough.\nEval for pneumonia, consolidation",
}
SAMPLE_RATE = 60.0


@dataclass(frozen=True)
class EgdPhantomImage:
    """What was written for one image (for tests and docs; not written to disk)."""

    dicom_id: str
    path: str
    diagnosis: str
    patient_id: int
    shape: tuple[int, int]
    finding: np.ndarray  # bool (rows, cols): where the planted finding is


@dataclass(frozen=True)
class _Screen:
    """How an image of ``shape`` sits on the 1920x1080 reading-room display."""

    scale: float
    top: int
    left: int

    @classmethod
    def fit(cls, shape: tuple[int, int]) -> _Screen:
        rows, cols = shape
        scale = min((SCREEN[1] - 2 * 40) / rows, (SCREEN[0] - 2 * 40) / cols)
        return cls(scale, round((SCREEN[1] - rows * scale) / 2),
                   round((SCREEN[0] - cols * scale) / 2))

    def pads(self, shape) -> tuple[int, int, int, int]:
        rows, cols = shape
        bottom = SCREEN[1] - self.top - round(rows * self.scale)
        right = SCREEN[0] - self.left - round(cols * self.scale)
        return self.top, bottom, self.left, right

    def to_screen(self, xy: np.ndarray) -> np.ndarray:
        """Original (column, row) pixels to fractions of the screen (FPOGX, FPOGY)."""
        return (xy * self.scale + (self.left, self.top)) / SCREEN


def search_landmarks(phantom: Phantom) -> np.ndarray:
    """(7, 2) original-pixel (x, y) points a systematic reader checks: the upper, middle and
    lower zone of each lung (centroids of the lung field outside the heart, split in thirds
    by row) and the cardiac silhouette."""
    rows, cols = phantom.image.shape
    r, c = np.nonzero(phantom.lungs & ~phantom.heart)
    marks = []
    for side in (c < cols / 2, c >= cols / 2):
        zone_rows, zone_cols = r[side], c[side]
        edges = np.quantile(zone_rows, [0, 1 / 3, 2 / 3, 1])
        for top, bottom in zip(edges[:-1], edges[1:], strict=True):
            zone = (zone_rows >= top) & (zone_rows <= bottom)
            marks.append((zone_cols[zone].mean(), zone_rows[zone].mean()))
    heart_rows, heart_cols = np.nonzero(phantom.heart)
    marks.append((heart_cols.mean(), heart_rows.mean()))
    return np.array(marks)


def _fixation_points(phantom: Phantom, diagnosis: str, count: int,
                     rng: np.random.Generator) -> np.ndarray:
    """(count, 2) original-pixel (x, y) fixation centres for one reading.

    The simulated reader searches systematically, as radiologists are taught to: it visits
    :func:`search_landmarks` in turn (starting anywhere), each fixation a little off the
    landmark (s.d. 3 % of the image width). In an abnormal case 60 % of the fixations go to
    the finding instead; 4 % land on the screen around the image.
    """
    rows, cols = phantom.image.shape
    share = 0.0 if diagnosis == "Normal" else 0.6
    targets = rng.choice(3, size=count, p=[share, 0.96 - share, 0.04])
    points = np.zeros((count, 2))
    picks = np.flatnonzero(targets == 0)
    if len(picks):
        flat = np.flatnonzero(phantom.finding)
        chosen = flat[rng.integers(len(flat), size=len(picks))]
        points[picks] = np.stack([chosen % cols, chosen // cols], axis=1)
    picks = np.flatnonzero(targets == 1)
    marks = search_landmarks(phantom)
    order = (rng.integers(len(marks)) + np.arange(len(picks))) % len(marks)
    points[picks] = marks[order] + rng.normal(0, 0.03 * cols, (len(picks), 2))
    picks = np.flatnonzero(targets == 2)  # off the image: left of it or below it on the screen
    off = rng.random(len(picks)) < 0.5
    points[picks, 0] = np.where(off, -rng.uniform(20, 300, len(picks)),
                                rng.uniform(0, cols, len(picks)))
    points[picks, 1] = np.where(off, rng.uniform(0, rows, len(picks)),
                                rows + rng.uniform(20, 300, len(picks)))
    return points


def _gazepoint_rows(session: int, media: int, dicom_id: str, xy: np.ndarray,
                    times: np.ndarray, fixations: tuple[np.ndarray, np.ndarray, np.ndarray],
                    screen: _Screen, rng: np.random.Generator):
    """Gazepoint rows for points ``xy`` (original pixels) seen at ``times``.

    ``fixations`` = (id, start, duration) of the fixation each point belongs to.
    """
    fixation_id, start, duration = fixations
    pog = screen.to_screen(xy)
    previous = np.vstack([pog[:1], pog[:-1]])
    saccade = (pog - previous) * SCREEN
    magnitude = np.hypot(saccade[:, 0], saccade[:, 1])
    direction = np.degrees(np.arctan2(saccade[:, 1], saccade[:, 0]))
    pupil = rng.normal(0, 0.002, (len(xy), 4))
    for k in range(len(xy)):
        time = times[k]
        yield (
            session, media, dicom_id, k + 1, f"{time:.5f}",
            int(round(time * 1e7)) + 1_000_000_000,
            f"{pog[k, 0]:.5f}", f"{pog[k, 1]:.5f}", f"{start[k]:.5f}", f"{duration[k]:.5f}",
            int(fixation_id[k]), 1, f"{pog[k, 0]:.5f}", f"{pog[k, 1]:.5f}", 1,
            f"{0.42 + pupil[k, 0]:.5f}", f"{0.51 + pupil[k, 1]:.5f}", "21.54", "1.0", 1,
            f"{0.58 + pupil[k, 2]:.5f}", f"{0.51 + pupil[k, 3]:.5f}", "21.71", "1.0", 1,
            0, "0.00000", 0, "3.61", 1, "3.58", 1,
            f"{magnitude[k]:.3f}", f"{direction[k]:.3f}", int(time * 30),
            int(round(xy[k, 0])), int(round(xy[k, 1])),
        )


def _reading(phantom: Phantom, diagnosis: str, rng: np.random.Generator):
    """Fixations (centre, start, duration) and the 60 Hz samples of one simulated reading."""
    count = int(rng.integers(30, 60))
    centres = _fixation_points(phantom, diagnosis, count, rng)
    durations = rng.gamma(4.0, 0.07, count) + 0.08
    gaps = rng.uniform(0.03, 0.08, count)  # saccades
    starts = np.cumsum(np.concatenate([[rng.uniform(0.2, 0.5)], (durations + gaps)[:-1]]))
    jitter = 0.004 * max(phantom.image.shape)
    samples, sample_times, sample_ids = [], [], []
    for k in range(count):
        n = max(int(round(durations[k] * SAMPLE_RATE)), 1)
        samples.append(centres[k] + rng.normal(0, jitter, (n, 2)))
        sample_times.append(starts[k] + np.arange(n) / SAMPLE_RATE)
        sample_ids.append(np.full(n, k + 1))
    return (centres, starts, durations), (np.vstack(samples), np.concatenate(sample_times),
                                          np.concatenate(sample_ids))


def _dicom_id(rng: np.random.Generator) -> str:
    return "-".join(f"{int(g):08x}" for g in rng.integers(0, 2**32, size=5))


def _master_row(item: EgdPhantomImage, relpath: str, study_id: int, stay_id: int, pads,
                rng: np.random.Generator) -> dict:
    diagnosis = item.diagnosis
    row = dict.fromkeys(MASTER_SHEET, "")
    decade = int(rng.integers(2, 9)) * 10
    row.update(
        dicom_id=item.dicom_id,
        path=relpath,
        study_id=study_id, patient_id=item.patient_id, stay_id=stay_id,
        gender="FM"[int(rng.integers(2))], anchor_age=f"{decade} - {decade + 10}",
        normal_reports=int(diagnosis == "Normal"),
        cxr_exam_indication=_INDICATION[diagnosis],
    )
    row.update(zip(("image_top_pad", "image_bottom_pad", "image_left_pad", "image_right_pad"),
                   pads, strict=True))
    for i, (name, icd) in enumerate(_DX[diagnosis], start=1):
        row[f"dx{i}"], row[f"dx{i}_icd"] = name, icd
    row.update({d: int(d == diagnosis) for d in DIAGNOSES})
    row.update({f: int(f in _REPORT_POSITIVE[diagnosis]) for f in REPORT_FINDINGS})
    row.update({c: 1 for c in CHEXPERT_LABELS if c in _CHEXPERT_POSITIVE[diagnosis]})
    return row


def generate_egd_cxr(
    out: str | os.PathLike,
    *,
    n: int = 30,
    size: int | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> list[EgdPhantomImage]:
    """Write ``n`` phantom EGD-CXR images (rows about ``size``, default 2,400-3,000) and tables."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if size is not None and size < 64:
        raise ValueError("size must be at least 64 pixels")
    out = os.fspath(out)
    rng = np.random.default_rng(seed)
    diagnoses = rng.permutation(np.arange(n) % 3)
    written: list[EgdPhantomImage] = []
    fixation_rows, gaze_rows, master_rows = [], [], []
    patient = None
    with track(range(n), label="phantom EGD-CXR", enabled=show_progress) as indices:
        for i in indices:
            image_rng = np.random.default_rng([seed, i])
            diagnosis = DIAGNOSES[diagnoses[i]]
            if patient is None or image_rng.random() > 0.15:  # else: a second study
                patient = int(image_rng.integers(10_000_000, 20_000_000))
            study_id = int(image_rng.integers(50_000_000, 60_000_000))
            rows = int((size or 3000) * image_rng.uniform(0.8, 1.0))
            shape = (rows, int(rows * image_rng.uniform(0.80, 0.92)))
            phantom = render_chest(shape, image_rng, FINDING_OF[diagnosis])
            dicom_id = _dicom_id(image_rng)
            relpath = f"files/p{str(patient)[:2]}/p{patient}/s{study_id}/{dicom_id}.dcm"
            path = os.path.join(out, *relpath.split("/"))
            write_dicom(
                path, np.round(phantom.image * 4095).astype(np.uint16),
                sop_class_uid=DigitalXRayImageStorageForPresentation,
                sop_instance_uid=generate_uid(entropy_srcs=["cxrkit-egd", str(seed), str(i)]),
                bits_stored=12,
                attributes={
                    "Modality": "DX",
                    "BodyPartExamined": "CHEST",
                    "ViewPosition": "PA",
                    "PatientName": f"PHANTOM^EGD{seed}X{i:05d}",
                    "PatientID": str(patient),
                    "PatientBirthDate": "19010101",
                    "AccessionNumber": f"ACC{seed}X{i:05d}",
                    "StudyID": str(study_id),
                    "StudyDate": "21800101",
                },
            )
            item = EgdPhantomImage(dicom_id, path, diagnosis, patient, shape, phantom.finding)
            written.append(item)
            screen = _Screen.fit(shape)
            master_rows.append(_master_row(item, relpath, study_id,
                                           int(image_rng.integers(30_000_000, 40_000_000)),
                                           screen.pads(shape), image_rng))
            (centres, starts, durations), (samples, times, ids) = _reading(
                phantom, diagnosis, image_rng)
            session = i + 1
            fixation_ids = np.arange(1, len(centres) + 1)
            fixation_rows.extend(_gazepoint_rows(
                session, i, dicom_id, centres, starts, (fixation_ids, starts, durations),
                screen, image_rng))
            gaze_rows.extend(_gazepoint_rows(
                session, i, dicom_id, samples, times,
                (ids, starts[ids - 1], durations[ids - 1]), screen, image_rng))
    _write_csv(os.path.join(out, "master_sheet.csv"), MASTER_SHEET,
               ([row[c] for c in MASTER_SHEET] for row in master_rows))
    _write_csv(os.path.join(out, "fixations.csv"), FIXATIONS, fixation_rows)
    _write_csv(os.path.join(out, "eye_gaze.csv"), EYE_GAZE, gaze_rows)
    return written


def _write_csv(path: str, header, rows) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
