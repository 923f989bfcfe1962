"""EGD-CXR raw -> TFRecords: labels, heatmaps on the findings, patient splits, bad input."""

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrkit.errors import InputError
from cxrkit.preprocessing import EgdCxrPreprocessing
from data_prep.egd_cxr.convert import convert_egd_cxr
from data_prep.egd_cxr.heatmap import dwell_map, gaze_heatmap
from data_prep.phantom.egd_cxr import generate_egd_cxr

tf = pytest.importorskip("tensorflow")
from cxrkit.data import load  # noqa: E402

TARGET = (64, 48)
CANVAS = (160, 120)  # the study's canvas scaled to the ~160-row phantoms: wide ones are cropped
PRE = EgdCxrPreprocessing(TARGET, "centre", CANVAS)


def _convert(src, out, gaze="eye_gaze.csv", **kwargs):
    params = {"target": TARGET, "canvas": CANVAS, "test": 2, "val": 2, "seed": 0, "sigma": 20.0}
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
    padded = 0
    for item in items:
        _, e = examples[item.dicom_id]
        assert int(e["label"]) == ("Normal", "CHF", "pneumonia").index(item.diagnosis)
        assert e["patient_id"].numpy().decode() == str(item.patient_id)
        image, heat = e["image"].numpy()[..., 0], e["heatmap"].numpy()[..., 0]
        assert image.shape == heat.shape == TARGET
        assert image.min() == 0.0 and image.max() == 1.0 and heat.max() == 1.0
        rows, cols = PRE.geometry(item.shape).covered
        padding = np.ones(TARGET, bool)
        padding[rows, cols] = False
        assert not heat[padding].any() and not image[padding].any()
        padded += int(padding.any())
        if item.diagnosis != "Normal":
            finding = PRE.geometry(item.shape).resample(item.finding) > 0.25
            finding = cv2.dilate(finding.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            peak = np.unravel_index(np.argmax(heat), heat.shape)
            assert finding[peak], (item.diagnosis, peak)
    assert padded >= 3  # the shorter phantoms leave canvas padding around them


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
    assert manifest["features"]["gaze_dwell"]["dtype"] == "uint16"
    _, examples = _examples(tmp_path)
    with open(Path(src) / "fixations.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    compared = 0
    for item in items:
        mine = [r for r in rows if r["DICOM_ID"] == item.dicom_id]
        x, y, d = (np.array([float(r[k]) for r in mine])
                   for k in ("X_ORIGINAL", "Y_ORIGINAL", "FPOGD"))
        weighted = gaze_heatmap(x, y, d, PRE.geometry(item.shape), sigma=20.0)
        counted = gaze_heatmap(x, y, None, PRE.geometry(item.shape), sigma=20.0)
        stored = examples[item.dicom_id][1]["heatmap"].numpy()[..., 0]
        np.testing.assert_allclose(stored, weighted, atol=1 / 65535)
        # GazeGNN's input: the dwell-time map of the same rows (their "Time (in secs)")
        t = np.array([float(r["Time (in secs)"]) for r in mine])
        dwell = examples[item.dicom_id][1]["gaze_dwell"].numpy()[..., 0]
        np.testing.assert_allclose(dwell, dwell_map(x, y, t, PRE.geometry(item.shape)),
                                   atol=1 / 65535)
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


def _rewrite_gaze(path: Path, change) -> None:
    """Apply ``change(row, index)`` (in place, or return None to drop) to every gaze row."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    kept = [row for i, row in enumerate(rows) if change(row, i) is not False]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(kept)


def test_bad_gaze_values_are_dropped_and_counted(egd_phantom, tmp_path):
    """NaN or negative durations and non-numeric coordinates never reach a heatmap: they are
    dropped with a count per image, and an image left without usable gaze is skipped."""
    src, items = egd_phantom
    raw = tmp_path / "raw"
    shutil.copytree(src, raw)
    first, second = items[0].dicom_id, items[1].dicom_id
    poisoned = {"count": 0}

    def change(row, index):
        if row["DICOM_ID"] == first and index % 3 == 0:
            row["FPOGD"] = ("nan", "-0.5", "inf")[poisoned["count"] % 3]
            poisoned["count"] += 1
        elif row["DICOM_ID"] == second:
            row["X_ORIGINAL"] = "n/a"
    _rewrite_gaze(raw / "eye_gaze.csv", change)
    clean = _convert(src, tmp_path / "clean", weight="duration")
    manifest = _convert(raw, tmp_path / "out", weight="duration")
    dropped = manifest["gaze_rows_dropped"]
    assert dropped["per_image"][first] == poisoned["count"] > 0
    assert dropped["total"] == poisoned["count"] + dropped["per_image"][second]
    skipped = {s["source"]: s["reason"] for s in manifest["skipped"]}
    assert any(second in reason and "gaze rows" in reason and "unusable" in reason
               for reason in skipped.values())
    _, before = _examples(tmp_path / "clean")
    _, after = _examples(tmp_path / "out")
    assert second not in after and first in after
    # The image with poisoned rows keeps a heatmap from its good rows: close to the clean one.
    a = before[first][1]["heatmap"].numpy().ravel()
    b = after[first][1]["heatmap"].numpy().ravel()
    assert b.max() == pytest.approx(1.0, abs=1e-4) and np.corrcoef(a, b)[0, 1] > 0.9
    assert clean["gaze_rows_dropped"]["total"] == 0


def test_hostile_tables_and_paths(egd_phantom, tmp_path):
    """A Latin-1 master sheet and a binary gaze table are one InputError naming the file; a
    master-sheet path that leaves --images is refused and listed."""
    src, items = egd_phantom
    raw = tmp_path / "raw"
    shutil.copytree(src, raw)
    sheet = raw / "master_sheet.csv"
    original = sheet.read_bytes()
    sheet.write_bytes(original.replace(b"Normal", "Normal\u00e9".encode("latin-1"), 1))
    with pytest.raises(InputError, match=r"master_sheet\.csv: the master sheet is not UTF-8"):
        _convert(raw, tmp_path / "a")
    sheet.write_bytes(original)
    gaze = raw / "fixations.csv"
    gaze.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(InputError, match=r"fixations\.csv: the gaze table is not UTF-8"):
        _convert(raw, tmp_path / "b", gaze="fixations.csv")
    with open(sheet, newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    outside = tmp_path / "elsewhere.dcm"
    shutil.copy(raw / rows[0]["path"], outside)
    rows[0]["path"] = "../elsewhere.dcm"
    assert (raw / rows[0]["path"]).resolve() == outside.resolve()
    with open(sheet, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(rows)
    manifest = _convert(raw, tmp_path / "c")
    reasons = [s["reason"] for s in manifest["skipped"]]
    assert any("leaves the --images folder" in r for r in reasons), reasons
