"""The phantom SIIM-ACR set: raw layout, exact CSV header, masks, determinism."""

import hashlib
from pathlib import Path

import numpy as np
import pydicom

from cxrkit.preprocessing import read_dicom
from data_prep.phantom.anatomy import render_chest
from data_prep.phantom.siim_acr import generate_siim_acr
from data_prep.siim_acr import read_rle_csv, rle_decode


def test_layout_and_exact_csv_header(siim_phantom):
    out, items = siim_phantom
    files = sorted(Path(out).glob("dicom-images-train/*/*/*.dcm"))
    assert len(files) == len(items) == 12
    for item in items:
        ds = pydicom.dcmread(item.path, stop_before_pixels=True)
        study, series, name = Path(item.path).parts[-3:]
        assert (study, series, name) == (ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                         f"{ds.SOPInstanceUID}.dcm")
        assert ds.Modality == "CR" and ds.BitsStored == 8
        assert ds.PhotometricInterpretation == item.photometric
    lines = (Path(out) / "train-rle.csv").read_text().splitlines()
    assert lines[0] == "ImageId, EncodedPixels"
    assert all(line.split(",")[1].startswith(" ") for line in lines[1:])


def test_labels_syntaxes_and_photometrics_are_mixed(tmp_path):
    items = generate_siim_acr(tmp_path, n=40, size=64, seed=11)
    labels = [item.label for item in items]
    assert sum(labels) == 20
    assert {item.photometric for item in items} == {"MONOCHROME1", "MONOCHROME2"}
    assert sum(item.photometric == "MONOCHROME1" for item in items) < 10
    assert {item.jpeg for item in items} == {True, False}
    assert any(len(item.rle_rows) > 1 for item in items)  # masks split over several rows
    assert all(item.rle_rows == ("-1",) for item in items if not item.label)


def test_rows_union_to_the_mask_inside_the_lungs(siim_phantom):
    out, items = siim_phantom
    table = read_rle_csv(Path(out) / "train-rle.csv")
    assert table.problems == [] and set(table.regions) == {i.image_id for i in items}
    for index, item in enumerate(items):
        union = np.zeros((96, 96), bool)
        for rle in table.regions[item.image_id]:
            union |= rle_decode(rle, 96, 96)
        assert union.any() == bool(item.label)
        # Re-render the same image to get its lung fields: the generator is deterministic.
        phantom = render_chest((96, 96), np.random.default_rng([3, index]),
                               "pneumothorax" if item.label else "none")
        np.testing.assert_array_equal(union, phantom.finding)
        assert not (union & ~phantom.lungs).any()


def test_pneumothorax_rim_is_darker_than_the_rest_of_its_lung():
    for seed in range(6):
        phantom = render_chest((256, 256), np.random.default_rng(seed), "pneumothorax")
        assert phantom.finding.any() and not (phantom.finding & ~phantom.lungs).any()
        rest = phantom.lungs & ~phantom.finding & ~phantom.heart
        assert phantom.image[phantom.finding].mean() < phantom.image[rest].mean() - 0.03


def test_pixels_match_the_phantom_after_photometric_handling(siim_phantom):
    _, items = siim_phantom
    for index, item in enumerate(items):
        phantom = render_chest((96, 96), np.random.default_rng([3, index]),
                               "pneumothorax" if item.label else "none")
        pixels = read_dicom(item.path)
        error = np.abs(pixels - np.round(phantom.image * 255)).mean()
        assert error < (3.0 if item.jpeg else 1e-6), (item.photometric, item.jpeg, error)


def test_same_seed_same_bytes(tmp_path):
    def digest(folder):
        h = hashlib.sha256()
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
        return h.hexdigest()

    generate_siim_acr(tmp_path / "a", n=5, size=48, seed=7)
    generate_siim_acr(tmp_path / "b", n=5, size=48, seed=7)
    generate_siim_acr(tmp_path / "c", n=5, size=48, seed=8)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
