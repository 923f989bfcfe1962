"""Writing phantom radiographs as DICOM files like the real datasets' ones.

Uncompressed files use Explicit VR Little Endian. JPEG Baseline files (the transfer syntax of
the real SIIM-ACR images) are written without a JPEG encoder in pydicom, which cannot encode
that syntax: OpenCV encodes the frame, :func:`pydicom.encaps.encapsulate` wraps it, and Pixel
Data gets VR OB. Nothing time- or host-dependent is written, so the same inputs give the same
bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import cv2
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, JPEGBaseline8Bit


def write_dicom(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    photometric: str = "MONOCHROME2",
    jpeg_quality: int | None = None,
    bits_stored: int | None = None,
    attributes: Mapping[str, object] = (),
) -> None:
    """Write a single-frame grayscale image.

    Args:
        pixels: uint8 or uint16 ``(rows, cols)`` stored values (already inverted for
            MONOCHROME1: the file holds exactly these values).
        jpeg_quality: encode as JPEG Baseline with this quality (uint8 pixels only); ``None``
            writes uncompressed pixels.
        bits_stored: defaults to the dtype's bit depth.
        attributes: further data elements by keyword (patient, study, series, geometry ...).
    """
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype not in (np.uint8, np.uint16) or pixels.ndim != 2:
        raise ValueError(f"expected a 2-D uint8/uint16 image, got {pixels.dtype} {pixels.shape}")
    if jpeg_quality is not None and pixels.dtype != np.uint8:
        raise ValueError("JPEG Baseline holds 8-bit pixels only")
    bits_allocated = pixels.dtype.itemsize * 8

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = (
        ExplicitVRLittleEndian if jpeg_quality is None else JPEGBaseline8Bit
    )
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    for keyword, value in dict(attributes).items():
        setattr(ds, keyword, value)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if jpeg_quality is None:
        ds.PixelData = pixels.tobytes()
    else:
        ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode the frame as JPEG")
        ds.PixelData = encapsulate([encoded.tobytes()])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
