"""The converters on Apache Beam (two DirectRunner worker processes) against the local runner:
byte-identical records and manifests, failures by name, the gaze table joined by key."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from data_prep.egd_cxr.convert import convert_egd_cxr
from data_prep.siim_acr.convert import convert_siim_acr

if os.environ.get("CXRKIT_REQUIRE_BEAM") != "1":
    pytest.importorskip("apache_beam", reason="the beam extra is not installed")


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def egd_raw(tmp_path_factory):
    """Phantom EGD-CXR with a corrupt DICOM, a row whose label is malformed and gaze rows with
    unusable values: every kind of problem the manifest lists."""
    from data_prep.phantom.egd_cxr import generate_egd_cxr

    src = tmp_path_factory.mktemp("egd_beam")
    items = generate_egd_cxr(src, n=14, size=96, seed=8)
    Path(items[3].path).write_bytes(b"not a dicom")
    with open(src / "master_sheet.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    rows[6][rows[0].index("CHF")] = "maybe"
    with open(src / "master_sheet.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with open(src / "fixations.csv", newline="") as handle:
        gaze = list(csv.reader(handle))
    x = gaze[0].index("X_ORIGINAL")
    for row in gaze[5:9]:
        row[x] = "nan"
    with open(src / "fixations.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(gaze)
    return src, items


def test_egd_cxr_on_beam_is_byte_identical_and_never_reads_the_whole_gaze_table(
        egd_raw, tmp_path, monkeypatch):
    import data_prep.egd_cxr.convert as convert

    src, items = egd_raw
    options = {"gaze_source": "fixations", "target": (32, 32), "canvas": (96, 96),
               "sigma": 3.0, "test": 3, "val": 2, "seed": 1, "shards": 2}
    local = convert_egd_cxr(src / "master_sheet.csv", src / "fixations.csv", src,
                            tmp_path / "local", **options)

    def whole_table(*args, **kwargs):
        raise AssertionError("the Beam runner read the whole gaze table in one process")

    monkeypatch.setattr(convert, "read_gaze", whole_table)  # the launching process
    beam = convert_egd_cxr(src / "master_sheet.csv", src / "fixations.csv", src,
                           tmp_path / "beam", runner="beam", workers=2, **options)
    assert _digests(tmp_path / "local") == _digests(tmp_path / "beam")
    assert beam == local
    reasons = {item["source"]: item["reason"] for item in beam["skipped"]}
    broken = os.path.relpath(items[3].path, src)
    assert reasons[broken] == "not a DICOM file (no DICM preamble)"
    assert any("label column CHF holds 'maybe'" in r for r in reasons.values())
    assert beam["gaze_rows_dropped"]["total"] == 4
    assert sum(c["total"] for c in beam["counts"].values()) == 12
    assert len(beam["shards"]["train"]) == 2


def test_egd_splits_are_decided_before_any_image_is_read(egd_raw, tmp_path):
    """A DICOM that fails to decode leaves its split one smaller and moves no other image."""
    src, items = egd_raw
    whole = tmp_path / "whole"
    shutil.copytree(src, whole)
    shutil.copy(Path(items[4].path), whole / os.path.relpath(items[3].path, src))
    options = {"gaze_source": "fixations", "target": (32, 32), "canvas": (96, 96),
               "sigma": 3.0, "test": 3, "val": 2, "seed": 1}
    broken = convert_egd_cxr(src / "master_sheet.csv", src / "fixations.csv", src,
                             tmp_path / "a", **options)
    repaired = convert_egd_cxr(whole / "master_sheet.csv", whole / "fixations.csv", whole,
                               tmp_path / "b", **options)

    def splits(out):
        from cxrkit.data import load

        return {example["image_id"].decode(): split
                for split in ("train", "validation", "test")
                for example in load(out, split).as_numpy_iterator()}

    before, after = splits(tmp_path / "a"), splits(tmp_path / "b")
    assert set(after) - set(before) == {items[3].dicom_id}
    assert all(after[i] == split for i, split in before.items())
    assert broken["parameters"]["val"] == repaired["parameters"]["val"] == 2


def test_siim_acr_on_beam_is_byte_identical(tmp_path):
    from data_prep.phantom.siim_acr import generate_siim_acr

    src = tmp_path / "siim"
    generate_siim_acr(src, n=16, size=64, seed=4)
    sorted(src.rglob("*.dcm"))[2].write_bytes(b"junk")
    options = {"size": 32, "subset": None, "split": "0.5,0.25,0.25", "shards": 2}
    local = convert_siim_acr(src, src / "train-rle.csv", tmp_path / "local", **options)
    beam = convert_siim_acr(src, src / "train-rle.csv", tmp_path / "beam", runner="beam",
                            workers=2, **options)
    assert _digests(tmp_path / "local") == _digests(tmp_path / "beam")
    assert beam == local
    assert [item["reason"] for item in beam["skipped"]] == [
        "not a DICOM file (no DICM preamble)"]
