"""EGD-CXR raw -> TFRecords: labels, heatmaps on the findings, patient splits, bad input."""

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrkit.preprocessing import Geometry
from data_prep.egd_cxr.convert import convert_egd_cxr
from data_prep.egd_cxr.heatmap import gaze_heatmap
from data_prep.phantom.egd_cxr import generate_egd_cxr

tf = pytest.importorskip("tensorflow")
from cxrkit.data import load  # noqa: E402

TARGET = (64, 48)


def _convert(src, out, gaze="eye_gaze.csv", **kwargs):
    params = {"target": TARGET, "test": 2, "val": 2, "seed": 0, "sigma": 20.0}
    return convert_egd_cxr(Path(src) / "master_sheet.csv", Path(src) / gaze, src, out,
                           **{**params, **kwargs})


def _examples(out):
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    found = {}
    for split, count in manifest["counts"].items():
        if count["total"]:
            for e in load(out, split):
                found[e["image_id"].numpy().decode()] = (split, e)
    return manifest, found


def test_round_trip_and_heatmap_peaks_on_the_finding(egd_phantom, tmp_path):
    src, items = egd_phantom
    _convert(src, tmp_path)
    manifest, examples = _examples(tmp_path)
    assert set(examples) == {i.dicom_id for i in items}
    assert manifest["features"]["heatmap"]["dtype"] == "uint16"
    for item in items:
        _, e = examples[item.dicom_id]
        assert int(e["label"]) == ("Normal", "CHF", "pneumonia").index(item.diagnosis)
        assert e["patient_id"].numpy().decode() == str(item.patient_id)
        image, heat = e["image"].numpy()[..., 0], e["heatmap"].numpy()[..., 0]
        assert image.shape == heat.shape == TARGET
        assert image.min() == 0.0 and image.max() == 1.0 and heat.max() == 1.0
        rows, cols = Geometry(item.shape, TARGET).region
        assert not heat[rows:].any() and not heat[:, cols:].any()  # the padding stays empty
        if item.diagnosis != "Normal":
            finding = cv2.resize(item.finding.astype(np.uint8), (cols, rows),
                                 interpolation=cv2.INTER_NEAREST)
            finding = cv2.dilate(finding, np.ones((5, 5), np.uint8)).astype(bool)
            peak = np.unravel_index(np.argmax(heat), heat.shape)
            assert finding[peak], (item.diagnosis, peak)


def test_patients_never_span_splits(tmp_path):
    items = generate_egd_cxr(tmp_path / "raw", n=30, size=64, seed=2)
    assert len({i.patient_id for i in items}) < 30
    manifest = _convert(tmp_path / "raw", tmp_path / "out", test=6, val=4)
    _, examples = _examples(tmp_path / "out")
    split_of = {}
    for split, e in examples.values():
        split_of.setdefault(e["patient_id"].numpy().decode(), set()).add(split)
    assert all(len(s) == 1 for s in split_of.values())
    assert manifest["counts"]["test"]["total"] == 6
    assert manifest["counts"]["validation"]["total"] == 4


def test_fixations_weighted_by_duration(egd_phantom, tmp_path):
    """Each stored heatmap is the duration-weighted map of that image's fixations, computed
    here from the CSV rows with numpy's csv-free parse, and differs from the count map."""
    src, items = egd_phantom
    manifest = _convert(src, tmp_path, gaze="fixations.csv", weight="duration",
                        gaze_source="fixations", test=0, val=0)
    assert manifest["parameters"]["weight"] == "duration"
    _, examples = _examples(tmp_path)
    with open(Path(src) / "fixations.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    compared = 0
    for item in items:
        mine = [r for r in rows if r["DICOM_ID"] == item.dicom_id]
        x, y, d = (np.array([float(r[k]) for r in mine])
                   for k in ("X_ORIGINAL", "Y_ORIGINAL", "FPOGD"))
        weighted = gaze_heatmap(x, y, d, item.shape, target=TARGET, sigma=20.0)
        counted = gaze_heatmap(x, y, None, item.shape, target=TARGET, sigma=20.0)
        stored = examples[item.dicom_id][1]["heatmap"].numpy()[..., 0]
        np.testing.assert_allclose(stored, weighted, atol=1 / 65535)
        if np.abs(weighted - counted).max() > 0.05:  # durations vary enough to matter
            assert np.abs(stored - counted).max() > 0.05
            compared += 1
    assert compared >= len(items) // 2


def test_bad_rows_are_skipped_and_nothing_identifying_leaks(egd_phantom, tmp_path):
    src, items = egd_phantom
    raw = tmp_path / "raw"
    shutil.copytree(src, raw)
    sheet = raw / "master_sheet.csv"
    with open(sheet, newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    rows[0]["Normal"] = rows[0]["CHF"] = "1"  # ambiguous label
    (raw / rows[1]["path"]).unlink()  # missing DICOM
    (raw / rows[2]["path"]).write_bytes(b"not a dicom")  # corrupt DICOM
    rows.append({**rows[3], "dicom_id": "00000000-00000000-00000000-00000000-00000000"})
    with open(sheet, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(rows)
    manifest = _convert(raw, tmp_path / "out", test=1, val=1)
    text = json.dumps(manifest["skipped"])
    assert "not exactly one of Normal/CHF/pneumonia" in text
    assert "DICOM file not found" in text and "not a DICOM file" in text
    assert "no gaze recorded" in text
    assert sum(c["total"] for c in manifest["counts"].values()) == 6
    blob = b"".join(p.read_bytes() for p in (tmp_path / "out").iterdir())
    for planted in (b"PHANTOM^EGD", b"ACC5X", b"19010101"):
        assert planted not in blob
