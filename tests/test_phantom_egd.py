"""The phantom EGD-CXR set: MIMIC-CXR layout, the real table headers, gaze on the findings."""

import csv
import re
from collections import Counter

import numpy as np
import pydicom

from cxrkit.preprocessing import read_dicom
from data_prep.egd_cxr.columns import GAZEPOINT, MASTER_SHEET
from data_prep.phantom.egd_cxr import generate_egd_cxr

REAL_MASTER_HEADER = (
    "dicom_id,path,study_id,patient_id,stay_id,gender,anchor_age,image_top_pad,"
    "image_bottom_pad,image_left_pad,image_right_pad,dx1,dx1_icd,dx2,dx2_icd,dx3,dx3_icd,dx4,"
    "dx4_icd,dx5,dx5_icd,dx6,dx6_icd,dx7,dx7_icd,dx8,dx8_icd,dx9,dx9_icd,normal_reports,"
    "Normal,CHF,pneumonia,consolidation,enlarged_cardiac_silhouette,linear__patchy_atelectasis,"
    "lobar__segmental_collapse,not_otherwise_specified_opacity___pleural__parenchymal_opacity__,"
    "pleural_effusion_or_thickening,pulmonary_edema__hazy_opacity,normal_anatomically,"
    "elevated_hemidiaphragm,hyperaeration,vascular_redistribution,atelectasis__chx,"
    "cardiomegaly__chx,consolidation__chx,edema__chx,enlarged_cardiomediastinum__chx,"
    "fracture__chx,lung_lesion__chx,lung_opacity__chx,no_finding__chx,pleural_effusion__chx,"
    "pleural_other__chx,pneumonia__chx,pneumothorax__chx,support_devices__chx,"
    "cxr_exam_indication"
)
REAL_FIXATIONS_HEADER = (
    "SESSION_ID,MEDIA_ID,DICOM_ID,CNT,Time (in secs),TIMETICK(f=10000000),FPOGX,FPOGY,FPOGS,"
    "FPOGD,FPOGID,FPOGV,BPOGX,BPOGY,BPOGV,LPCX,LPCY,LPD,LPS,LPV,RPCX,RPCY,RPD,RPS,RPV,BKID,"
    "BKDUR,BKPMIN,LPMM,LPMMV,RPMM,RPMMV,SACCADE_MAG,SACCADE_DIR,VID_FRAME,X_ORIGINAL,Y_ORIGINAL"
)


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_exact_headers(egd_phantom):
    out, _ = egd_phantom
    assert ",".join(MASTER_SHEET) == REAL_MASTER_HEADER and len(MASTER_SHEET) == 59
    assert ",".join(GAZEPOINT) == REAL_FIXATIONS_HEADER
    for name, header in (("master_sheet.csv", REAL_MASTER_HEADER),
                         ("fixations.csv", REAL_FIXATIONS_HEADER),
                         ("eye_gaze.csv", REAL_FIXATIONS_HEADER)):
        assert (out / name).read_text().splitlines()[0] == header


def test_master_sheet_rows_and_mimic_layout(egd_phantom):
    out, items = egd_phantom
    rows = _rows(out / "master_sheet.csv")
    assert len(rows) == 9
    assert Counter(item.diagnosis for item in items) == {"Normal": 3, "CHF": 3, "pneumonia": 3}
    assert any("\n" in r["cxr_exam_indication"] and "," in r["cxr_exam_indication"]
               for r in rows)
    for row, item in zip(rows, items, strict=True):
        assert re.fullmatch(r"([0-9a-f]{8}-){4}[0-9a-f]{8}", row["dicom_id"])
        assert re.fullmatch(rf"files/p\d\d/p\d{{8}}/s\d{{8}}/{row['dicom_id']}\.dcm", row["path"])
        assert row["path"].startswith(f"files/p{row['patient_id'][:2]}/p{row['patient_id']}/")
        assert [int(row[d]) for d in ("Normal", "CHF", "pneumonia")].count(1) == 1
        assert row[item.diagnosis] == "1"
        dicom = out / row["path"]
        ds = pydicom.dcmread(dicom, stop_before_pixels=True)
        assert (ds.Rows, ds.Columns) == item.shape and ds.Rows > ds.Columns  # portrait
        assert ds.BitsStored == 12 and ds.PhotometricInterpretation == "MONOCHROME2"
        assert read_dicom(dicom).max() <= 4095


def test_default_size_is_mimic_like(tmp_path):
    (item,) = generate_egd_cxr(tmp_path, n=1, seed=1)
    assert 2000 <= item.shape[1] < item.shape[0] <= 3000


def test_some_patients_have_two_studies(tmp_path):
    items = generate_egd_cxr(tmp_path, n=30, size=64, seed=2)
    counts = Counter(item.patient_id for item in items)
    assert max(counts.values()) > 1 and len(counts) > 15


def _gaze_by_image(path):
    points = {}
    for row in _rows(path):
        points.setdefault(row["DICOM_ID"], []).append(
            (int(row["X_ORIGINAL"]), int(row["Y_ORIGINAL"]), float(row["FPOGD"])))
    return {k: np.array(v) for k, v in points.items()}


def test_gaze_concentrates_on_findings(egd_phantom):
    out, items = egd_phantom
    fixations = _gaze_by_image(out / "fixations.csv")
    samples = _gaze_by_image(out / "eye_gaze.csv")
    for item in items:
        fx = fixations[item.dicom_id]
        assert len(samples[item.dicom_id]) > 5 * len(fx)  # 60 Hz samples outnumber fixations
        assert (fx[:, 2] > 0).all()  # durations in seconds
        rows, cols = item.shape
        on = (fx[:, 0] >= 0) & (fx[:, 0] < cols) & (fx[:, 1] >= 0) & (fx[:, 1] < rows)
        x, y = fx[on, 0].astype(int), fx[on, 1].astype(int)
        share = item.finding[y, x].mean() if item.finding.any() else 0.0
        area = item.finding.mean()
        if item.diagnosis == "Normal":
            assert not item.finding.any()
            assert (x < cols / 2).mean() > 0.2 and (x >= cols / 2).mean() > 0.2  # both lungs
        else:
            assert share > 0.45 and share > 3 * area, (item.diagnosis, share, area)


def test_some_gaze_falls_off_the_image(egd_phantom):
    out, items = egd_phantom
    shapes = {item.dicom_id: item.shape for item in items}
    off = 0
    for dicom_id, points in _gaze_by_image(out / "eye_gaze.csv").items():
        rows, cols = shapes[dicom_id]
        off += ((points[:, 0] < 0) | (points[:, 1] < 0) | (points[:, 0] >= cols)
                | (points[:, 1] >= rows)).sum()
    assert off > 0


def _box_phantom():
    from data_prep.phantom.anatomy import Phantom

    lungs = np.zeros((90, 80), bool)
    lungs[0:90, 10:30] = lungs[0:90, 50:70] = True
    heart = np.zeros_like(lungs)
    heart[60:90, 25:55] = True  # overlaps both lungs' lower zones, which lose those pixels
    finding = np.zeros_like(lungs)
    finding[20:30, 55:65] = True
    return Phantom(np.zeros(lungs.shape, np.float32), lungs, finding, heart)


def test_search_landmarks_are_zone_centroids():
    """Two rectangular lungs and a heart: the six zone centroids and the heart's, by hand."""
    from data_prep.phantom.egd_cxr import search_landmarks

    phantom = _box_phantom()
    field = phantom.lungs & ~phantom.heart
    rows = np.arange(90)[:, None]
    expected = []
    for cols in (slice(10, 30), slice(50, 70)):
        side = np.zeros_like(field)
        side[:, cols] = field[:, cols]
        cuts = np.quantile(np.nonzero(side)[0], [0, 1 / 3, 2 / 3, 1])
        for top, bottom in zip(cuts[:-1], cuts[1:], strict=True):
            r, c = np.nonzero(side & (rows >= top) & (rows <= bottom))
            expected.append((c.mean(), r.mean()))
    expected.append((39.5, 74.5))
    np.testing.assert_allclose(search_landmarks(phantom), expected)


def test_readings_follow_the_search_and_the_finding():
    """Normal: fixations scatter a little around every landmark in turn; abnormal: 60 % on
    the finding; a few off the image in both."""
    from data_prep.phantom.egd_cxr import _fixation_points, search_landmarks

    phantom = _box_phantom()
    marks = search_landmarks(phantom)
    for diagnosis, on_finding in (("Normal", 0.0), ("pneumonia", 0.6)):
        points = _fixation_points(phantom, diagnosis, 2000, np.random.default_rng(1))
        off = (points < 0).any(axis=1) | (points[:, 0] >= 80) | (points[:, 1] >= 90)
        assert 0.02 < off.mean() < 0.06
        x, y = points[~off].round().astype(int).T
        finding = phantom.finding[np.clip(y, 0, 89), np.clip(x, 0, 79)]
        assert abs(finding.mean() - on_finding / 0.96) < 0.05 or diagnosis == "Normal"
        rest = points[~off][~finding]
        nearest = np.linalg.norm(rest[:, None] - marks[None], axis=2)
        assert np.median(nearest.min(axis=1)) < 0.03 * 80 * 1.5  # s.d. 3 % of the width
        shares = np.bincount(nearest.argmin(axis=1), minlength=len(marks)) / len(rest)
        assert shares.min() > 0.5 / len(marks)  # every landmark is visited
