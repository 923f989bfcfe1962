"""The DICOM reader on both photometric interpretations and both transfer syntaxes."""

import numpy as np
import pydicom
import pytest
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from cxrkit.errors import InputError
from cxrkit.preprocessing import read_dicom
from data_prep.phantom.dicom_writer import write_dicom

REAL_NEGATIVE = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"


def _gradient(dtype=np.uint8, high=255):
    rows, cols = np.mgrid[0:48, 0:40]
    return np.round((rows * 3 + cols) / (47 * 3 + 39) * high).astype(dtype)


def _write(path, pixels, **kwargs):
    write_dicom(path, pixels, sop_class_uid=SecondaryCaptureImageStorage,
                sop_instance_uid=generate_uid(entropy_srcs=[str(path)]), **kwargs)
    return path


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_uncompressed_reads_back_exactly(tmp_path, photometric):
    display = _gradient()
    stored = display if photometric == "MONOCHROME2" else 255 - display
    path = _write(tmp_path / "a.dcm", stored, photometric=photometric)
    pixels = read_dicom(path)
    assert pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, display.astype(np.float32))
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_jpeg_baseline_decodes(tmp_path, photometric):
    display = _gradient()
    stored = display if photometric == "MONOCHROME2" else 255 - display
    path = _write(tmp_path / "j.dcm", stored, photometric=photometric, jpeg_quality=95)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    pixels = read_dicom(path)
    assert np.abs(pixels - display).mean() < 1.5  # lossy, but close
    assert np.corrcoef(pixels.ravel(), display.ravel())[0, 1] > 0.999


def test_sixteen_bit_monochrome1_inverts_over_bits_stored(tmp_path):
    stored = _gradient(np.uint16, 4095)
    path = _write(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1", bits_stored=12)
    np.testing.assert_array_equal(read_dicom(path), 4095.0 - stored)


def test_rescale_slope_and_intercept(tmp_path):
    stored = _gradient()
    path = _write(tmp_path / "r.dcm", stored,
                  attributes={"RescaleSlope": "2", "RescaleIntercept": "-100"})
    np.testing.assert_allclose(read_dicom(path), stored * 2.0 - 100.0)


def test_missing_corrupt_and_truncated_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_dicom(tmp_path / "absent.dcm")
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"this is not a dicom file" * 20)
    with pytest.raises(InputError, match=r"junk\.dcm: not a DICOM file"):
        read_dicom(junk)
    whole = _write(tmp_path / "whole.dcm", _gradient()).read_bytes()
    for name, cut in (("half.dcm", len(whole) // 2), ("header.dcm", 300)):
        truncated = tmp_path / name
        truncated.write_bytes(whole[:cut])
        with pytest.raises(InputError, match=rf"{name}: (corrupt|truncated|DICOM has no pixel)"):
            read_dicom(truncated)


def test_colour_images_are_refused(tmp_path):
    path = _write(tmp_path / "c.dcm", _gradient(), photometric="PALETTE COLOR")
    with pytest.raises(InputError, match="expected a grayscale image"):
        read_dicom(path)


def test_real_siim_jpeg_baseline_and_its_monochrome1_twin(realdata):
    original = read_dicom(realdata / "siim-acr" / REAL_NEGATIVE)
    twin = read_dicom(realdata / "siim-acr" / "Fake_MONOHR1.dcm")
    assert original.shape == (1024, 1024)
    assert original.min() >= 0 and original.max() <= 255
    assert 100 < original.mean() < 220  # a real, mostly bright MONOCHROME2 radiograph
    np.testing.assert_array_equal(twin, 255.0 - original)


def _patched(tmp_path, name, old: bytes, new: bytes, **attributes):
    """A valid file whose bytes ``old`` (one element, tag to value) are replaced by ``new``."""
    path = _write(tmp_path / "valid.dcm", _gradient(), attributes=attributes)
    data = path.read_bytes()
    assert data.count(old) == 1
    target = tmp_path / name
    target.write_bytes(data.replace(old, new))
    return target


FRAMES = b"\x28\x00\x08\x00IS\x02\x001 "  # (0028,0008) NumberOfFrames IS "1 "
SLOPE = b"\x28\x00\x53\x10DS\x02\x002 "  # (0028,1053) RescaleSlope DS "2 "


@pytest.mark.parametrize(("old", "new", "attributes", "problem"), [
    (FRAMES, FRAMES[:8] + b"AB", {"NumberOfFrames": "1"}, "NumberOfFrames"),
    (SLOPE, SLOPE[:8] + b"ab", {"RescaleSlope": "2"}, "RescaleSlope"),
    (FRAMES, FRAMES[:4] + b"\x43\x14" + FRAMES[6:], {"NumberOfFrames": "1"},
     "Unknown Value Representation"),
    (FRAMES, FRAMES[:6] + b"\xff\x7f" + FRAMES[8:], {"NumberOfFrames": "1"}, "truncated"),
])
def test_header_values_that_do_not_parse_are_the_files_problem(tmp_path, old, new, attributes,
                                                               problem):
    """Letters in a number, an unknown VR and an element longer than the file: one InputError
    naming the file, never pydicom's own exception."""
    path = _patched(tmp_path, "odd.dcm", old, new, **attributes)
    with pytest.raises(InputError, match=rf"odd\.dcm: .*{problem}"):
        read_dicom(path)


@pytest.mark.parametrize("kind", ["real", "phantom"])
def test_fuzzed_files_read_or_raise_the_input_error(request, tmp_path, kind):
    """200 copies of a DICOM with random bytes changed (fixed seed): every read returns an image
    or raises InputError. A real SIIM-ACR file (skipped without ../shared/realdata) and a
    phantom JPEG Baseline file of the same layout."""
    if kind == "real":
        source = request.getfixturevalue("realdata") / "siim-acr" / REAL_NEGATIVE
    else:
        source = _write(tmp_path / "phantom.dcm", _gradient(), jpeg_quality=90,
                        attributes={"PatientName": "Doe^Jane", "NumberOfFrames": "1"})
    original = source.read_bytes()
    header = original.find(b"\xe0\x7f\x10\x00") + 64  # up to the start of the pixels
    rng = np.random.default_rng(20261201)
    outcomes = {"image": 0, "InputError": 0}
    target = tmp_path / "fuzzed.dcm"
    for _ in range(200):
        data = bytearray(original)
        for _ in range(rng.integers(1, 9)):
            where = rng.integers(0, header) if rng.random() < 0.9 else rng.integers(len(data))
            data[where] = rng.integers(0, 256)
        target.write_bytes(bytes(data))
        try:
            pixels = read_dicom(target)
        except InputError as err:
            assert str(err).startswith(f"{target}: ") and "\n" not in str(err)
            outcomes["InputError"] += 1
        else:
            assert pixels.ndim == 2 and pixels.dtype == np.float32
            outcomes["image"] += 1
    assert outcomes["InputError"] > 40 and outcomes["image"] > 40, outcomes
