"""A phantom SIIM-ACR set in the raw layout of the real competition data.

Layout written under ``out``::

    dicom-images-train/<StudyInstanceUID>/<SeriesInstanceUID>/<ImageId>.dcm
    train-rle.csv            header "ImageId, EncodedPixels", values with a leading blank

About half of the images have a pneumothorax (:mod:`data_prep.phantom.anatomy`); their mask is
run-length encoded in the competition's relative, column-major convention, and some masks are
split over several rows (one row per region, as in the real table, whose image mask is the
union of its rows). Images are 8-bit CR, mostly MONOCHROME2 with a few MONOCHROME1 (stored
inverted), and in both JPEG Baseline (like the real files) and uncompressed transfer syntaxes.
Each file carries fake patient-identifying attributes so privacy checks downstream have
something to find.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from data_prep.phantom.anatomy import render_chest
from data_prep.phantom.dicom_writer import write_dicom
from data_prep.progress import track
from data_prep.siim_acr.rle import EMPTY, rle_encode

RLE_HEADER = "ImageId, EncodedPixels"
IMAGES_DIR = "dicom-images-train"
RLE_CSV = "train-rle.csv"


@dataclass(frozen=True)
class SiimPhantomImage:
    """What was written for one image (for tests and docs; not written to disk)."""

    image_id: str
    path: str
    label: int
    photometric: str
    jpeg: bool
    rle_rows: tuple[str, ...]


def _split_regions(mask: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Connected regions of a mask; a single region is sometimes cut into bands (several rows)."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    regions = [labels == k for k in range(1, count)]
    if len(regions) == 1 and rng.random() < 0.4:
        rows = np.flatnonzero(regions[0].any(axis=1))
        cuts = np.sort(rng.choice(rows[1:-1], size=rng.integers(1, 3), replace=False))
        bands = np.split(np.arange(mask.shape[0]), cuts)
        regions = [regions[0] & np.isin(np.arange(mask.shape[0]), b)[:, None] for b in bands]
    return [r for r in regions if r.any()]


def _uid(seed: int, *parts: object) -> str:
    return generate_uid(entropy_srcs=["cxrkit-phantom-siim-acr", str(seed), *map(str, parts)])


def generate_siim_acr(
    out: str | os.PathLike,
    *,
    n: int = 40,
    size: int = 1024,
    seed: int = 0,
    show_progress: bool = False,
) -> list[SiimPhantomImage]:
    """Write ``n`` phantom SIIM-ACR images of ``size`` x ``size`` pixels and their RLE table."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if size < 32:
        raise ValueError("size must be at least 32 pixels")
    out = os.fspath(out)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) < (n + 1) // 2).astype(int)
    monochrome1 = rng.random(n) < 0.1
    jpeg = rng.random(n) < 0.6
    written = []
    with track(range(n), label="phantom SIIM-ACR", enabled=show_progress) as indices:
        for i in indices:
            image_rng = np.random.default_rng([seed, i])
            phantom = render_chest((size, size), image_rng,
                                   "pneumothorax" if labels[i] else "none")
            image_id, study, series = (_uid(seed, i, kind) for kind in ("sop", "study", "series"))
            stored = np.round(phantom.image * 255).astype(np.uint8)
            photometric = "MONOCHROME1" if monochrome1[i] else "MONOCHROME2"
            if monochrome1[i]:
                stored = 255 - stored
            path = os.path.join(out, IMAGES_DIR, study, series, f"{image_id}.dcm")
            write_dicom(
                path, stored,
                sop_class_uid=SecondaryCaptureImageStorage,
                sop_instance_uid=image_id,
                photometric=photometric,
                jpeg_quality=95 if jpeg[i] else None,
                attributes={
                    "Modality": "CR",
                    "ConversionType": "WSD",
                    "BodyPartExamined": "CHEST",
                    "ViewPosition": "PA" if image_rng.random() < 0.6 else "AP",
                    "PatientName": f"PHANTOM^SIIM{seed}X{i:05d}",
                    "PatientID": f"phantom-{seed}-{i:05d}",
                    "PatientBirthDate": "19010101",
                    "PatientSex": "MF"[int(image_rng.integers(2))],
                    "PatientAge": f"{int(image_rng.integers(18, 90)):03d}Y",
                    "AccessionNumber": f"ACC{seed}X{i:05d}",
                    "StudyInstanceUID": study,
                    "SeriesInstanceUID": series,
                    "StudyDate": "19010101",
                    "StudyTime": "000000.00",
                    "SeriesNumber": 1,
                    "InstanceNumber": 1,
                    "PatientOrientation": "",
                    "PixelSpacing": [round(0.168 * 1024 / size, 6)] * 2,
                },
            )
            regions = _split_regions(phantom.finding, image_rng) if labels[i] else []
            rows = tuple(rle_encode(r) for r in regions) or (EMPTY,)
            written.append(SiimPhantomImage(image_id, path, int(labels[i]), photometric,
                                            bool(jpeg[i]), rows))
    with open(os.path.join(out, RLE_CSV), "w", newline="") as table:
        table.write(RLE_HEADER + "\n")
        for item in written:
            for rle in item.rle_rows:
                table.write(f"{item.image_id}, {rle}\n")
    return written
