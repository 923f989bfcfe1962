"""SIIM-ACR raw -> TFRecords: round trip, splits, determinism, atomicity, privacy, bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.uid import SecondaryCaptureImageStorage

from cxrkit.errors import InputError
from cxrkit.preprocessing import read_dicom
from data_prep.phantom.dicom_writer import write_dicom
from data_prep.siim_acr.convert import convert_siim_acr, parse_split

tf = pytest.importorskip("tensorflow")
from cxrkit.data import load  # noqa: E402


def _convert(src, out, **kwargs):
    params = {"size": 64, "subset": None, "split": "0.5,0.25,0.25", "seed": 0}
    return convert_siim_acr(src, Path(src) / "train-rle.csv", out, **{**params, **kwargs})


def _read_all(out):
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    examples = {}
    for split, count in manifest["counts"].items():
        if count["total"]:
            for e in load(out, split):
                examples[e["image_id"].numpy().decode()] = (split, e)
    return manifest, examples


def test_round_trip_labels_and_masks(siim_phantom, tmp_path):
    src, items = siim_phantom
    manifest, examples = _read_all(_convert(src, tmp_path) and tmp_path)
    assert set(examples) == {i.image_id for i in items}  # every image in exactly one split
    assert sum(c["total"] for c in manifest["counts"].values()) == 12
    for item in items:
        split, e = examples[item.image_id]
        assert int(e["label"]) == item.label
        image = e["image"].numpy()
        assert image.shape == (64, 64, 1)
        assert abs(image.mean()) < 1e-4 and abs(image.std() - 1) < 1e-3  # per-image z-score
        mask = e["mask"].numpy()
        assert set(np.unique(mask)) <= {0.0, 1.0}
        from data_prep.siim_acr import read_rle_csv, rle_decode

        regions = read_rle_csv(Path(src) / "train-rle.csv").regions[item.image_id]
        full = np.zeros((96, 96), bool)
        for rle in regions:
            full |= rle_decode(rle, 96, 96)
        assert abs(mask.mean() - full.mean()) <= 0.05 * max(full.mean(), 0.01)
    for split, count in manifest["counts"].items():  # class-balanced splits
        assert abs(count["healthy"] - count["pneumothorax"]) <= 1, split


def test_subset_and_split_rules(siim_phantom, tmp_path):
    src, _ = siim_phantom
    manifest = _convert(src, tmp_path / "a", subset=8, split=None)
    assert manifest["counts"]["train"]["total"] + manifest["counts"]["validation"]["total"] \
        + manifest["counts"]["test"]["total"] == 8
    assert sum(c["pneumothorax"] for c in manifest["counts"].values()) == 4
    with pytest.raises(InputError, match="needs 7 pneumothorax and 7 healthy"):
        _convert(src, tmp_path / "b", subset=14)
    three = _convert(src, tmp_path / "c", subset=3, split=None)
    assert sum(c["total"] for c in three["counts"].values()) == 3
    assert parse_split(None, 7200) == (5200, 1000, 1000)
    assert parse_split("6,3,3", 12) == (6, 3, 3)
    with pytest.raises(InputError, match="add up to 11"):
        parse_split("5,3,3", 12)


def test_deterministic_and_atomic(siim_phantom, tmp_path):
    src, _ = siim_phantom
    _convert(src, tmp_path / "a", shards=2)
    out = tmp_path / "b"
    out.mkdir()
    (out / "train-00000-of-00002.tfrecord.partial").write_bytes(b"interrupted")
    (out / "train-00003-of-00007.tfrecord").write_bytes(b"stale")
    _convert(src, out, shards=2)
    names_a = sorted(os.listdir(tmp_path / "a"))
    assert names_a == sorted(os.listdir(out))
    assert not any(n.endswith(".partial") for n in names_a)
    for name in names_a:
        assert (tmp_path / "a" / name).read_bytes() == (out / name).read_bytes(), name


def test_no_patient_field_reaches_the_output(siim_phantom, tmp_path):
    src, _ = siim_phantom
    _convert(src, tmp_path)
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for planted in (b"PHANTOM^SIIM", b"ACC3X", b"phantom-3-", b"19010101"):
        assert planted not in blob


def _broken_copy(src, dst):
    shutil.copytree(src, dst)
    files = sorted(Path(dst).rglob("*.dcm"))
    files[0].write_bytes(files[0].read_bytes()[:400])  # truncated
    files[1].unlink()  # row without image
    write_dicom(files[2].parent / "stray.dcm", np.zeros((40, 40), np.uint8),  # no row
                sop_class_uid=SecondaryCaptureImageStorage, sop_instance_uid="1.2.3.4.5")
    cv2.imwrite(str(Path(dst) / "9.8.7.png"), np.zeros((40, 40), np.uint8))  # no row
    with open(Path(dst) / "train-rle.csv", "a") as table:
        table.write(f"{files[3].stem}, 1 2 3\n")  # malformed row
    return files


def test_bad_inputs_are_skipped_and_listed(siim_phantom, tmp_path):
    src, _ = siim_phantom
    files = _broken_copy(src, tmp_path / "raw")
    manifest = _convert(tmp_path / "raw", tmp_path / "out")
    reasons = {s["source"]: s["reason"] for s in manifest["skipped"]}
    text = json.dumps(manifest["skipped"])
    assert "truncated" in text and files[0].name in text
    # Rows without a file are counted, not listed: the deleted image's and the truncated one's
    # (whose id cannot be read back from its header).
    assert files[1].stem not in text and manifest["absent_images"]["count"] == 2
    assert any(s.endswith("stray.dcm") and "1.2.3.4.5 has no row" in r and "unknown label" in r
               for s, r in reasons.items())
    assert reasons["9.8.7.png"] == "image id 9.8.7 has no row in the mask table (unknown label)"
    assert "odd count" in text
    assert sum(c["total"] for c in manifest["counts"].values()) == 12 - 3


def test_strict_cli_stops_with_one_line(siim_phantom, tmp_path):
    src, _ = siim_phantom
    _broken_copy(src, tmp_path / "raw")
    result = subprocess.run(
        [sys.executable, "-c", "from cxrkit.cli import main; main()", "data", "siim-acr",
         "--images", str(tmp_path / "raw"), "--rle", str(tmp_path / "raw" / "train-rle.csv"),
         "--out", str(tmp_path / "out"), "--subset", "all", "--size", "32", "--strict"],
        capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "--strict" in last


def test_real_samples(realdata, tmp_path):
    """The real negative DICOM and its MONOCHROME1 twin (same SOPInstanceUID, so converted
    one at a time): the twin's record is the preprocessing of 255 - the original."""
    original = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819"
    table = tmp_path / "rle.csv"
    sample = (realdata / "siim-acr" / "train-rle-sample.csv").read_text(encoding="utf-8-sig")
    table.write_text(sample.rstrip("\n") + f"\n{original}, -1\n")
    records = {}
    for name in (f"{original}.dcm", "Fake_MONOHR1.dcm"):
        raw = tmp_path / name / "images"
        raw.mkdir(parents=True)
        shutil.copyfile(realdata / "siim-acr" / name, raw / name)
        manifest = convert_siim_acr(raw, table, tmp_path / name / "out", size=64, subset=None,
                                    split="1,0,0")
        assert manifest["skipped"] == [] and manifest["absent_images"]["count"] == 10
        (example,) = load(tmp_path / name / "out", "train")
        assert example["image_id"].numpy().decode() == original
        assert int(example["label"]) == 0 and not example["mask"].numpy().any()
        records[name] = example["image"].numpy()[..., 0]
    inverted = 255.0 - read_dicom(realdata / "siim-acr" / f"{original}.dcm")
    scaled = np.round((inverted - inverted.min()) * 255 / np.ptp(inverted)).astype(np.uint8)
    equalised = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(scaled)
    expected = cv2.resize(equalised, (64, 64), interpolation=cv2.INTER_AREA).astype(float)
    expected = (expected - expected.mean()) / expected.std()
    twin = records["Fake_MONOHR1.dcm"]
    np.testing.assert_allclose(twin, expected, atol=1e-4)
    assert np.corrcoef(twin.ravel(), records[f"{original}.dcm"].ravel())[0, 1] < -0.9


def test_png_and_jpeg_conversions_give_the_dicom_records(siim_phantom, tmp_path):
    """The same pictures as <ImageId>.png (16-bit grey, or 8-bit RGB) instead of DICOMs give
    the same records: ids from the file names, grey from colour, 16 bits kept until the
    convention's own scaling to 8 bits."""
    src, _ = siim_phantom
    dicoms = sorted(src.rglob("*.dcm"))
    folder = tmp_path / "png"
    (folder / "nested").mkdir(parents=True)
    for i, path in enumerate(dicoms):
        pixels = read_dicom(path)
        eight = np.round((pixels - pixels.min()) * 255 / np.ptp(pixels)).astype(np.uint8)
        stem = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        if i % 2:
            cv2.imwrite(str(folder / f"{stem}.png"), eight.astype(np.uint16) * 257)
        else:
            cv2.imwrite(str(folder / "nested" / f"{stem}.png"), np.dstack([eight] * 3))
    assert cv2.imread(str(next(folder.glob("*.png"))), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    from_dicoms = _read_all(_convert_into(src, src / "train-rle.csv", tmp_path / "a"))
    from_pngs = _read_all(_convert_into(folder, src / "train-rle.csv", tmp_path / "b"))
    assert from_pngs[0]["skipped"] == [] and set(from_pngs[1]) == set(from_dicoms[1])
    for image_id, (split, example) in from_dicoms[1].items():
        other_split, other = from_pngs[1][image_id]
        assert other_split == split
        np.testing.assert_array_equal(other["mask"].numpy(), example["mask"].numpy())
        np.testing.assert_allclose(other["image"].numpy(), example["image"].numpy(),
                                   atol=1e-5)


def _convert_into(images, table, out):
    convert_siim_acr(images, table, out, size=64, subset=None, split="0.5,0.25,0.25", seed=0)
    return out
