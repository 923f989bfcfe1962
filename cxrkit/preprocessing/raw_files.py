"""Raw image files (DICOM, PNG, JPEG) to plain grayscale pixel arrays.

:func:`read_dicom` returns pixels in the MONOCHROME2 sense (higher = brighter = denser) in
modality units: MONOCHROME1 images are inverted over their stored value range, then the
rescale slope and intercept are applied. JPEG Baseline files (the transfer syntax of the real
SIIM-ACR images) decode through pylibjpeg + pylibjpeg-libjpeg.

Only pixel data leaves this module: no patient-identifying attribute (name, birth date,
accession number, ...) is returned, so none can reach a record, a log or a report by way of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from cxrkit.errors import InputError

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")


def _stored_range(ds: pydicom.Dataset) -> tuple[int, int]:
    bits = int(ds.get("BitsStored", ds.BitsAllocated))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def read_dicom(path: str | os.PathLike) -> np.ndarray:
    """Read a single-frame grayscale DICOM as a float32 ``(rows, columns)`` array.

    Raises:
        InputError: the file is missing, is not DICOM, is truncated or corrupt, has no pixel
            data, is not single-frame grayscale, or uses a compression no installed decoder reads.
    """
    path = os.fspath(path)
    try:
        ds = pydicom.dcmread(path)
    except FileNotFoundError:
        raise InputError(path, "DICOM file not found") from None
    except InvalidDicomError:
        raise InputError(path, "not a DICOM file (no DICM preamble)") from None
    except (OSError, EOFError, ValueError, TypeError, KeyError) as err:
        raise InputError(path, f"corrupt or truncated DICOM ({err})") from None
    if "PixelData" not in ds:
        raise InputError(path, "DICOM has no pixel data (truncated or not an image)")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in MONOCHROME:
        raise InputError(path, f"expected a grayscale image, got PhotometricInterpretation "
                               f"{photometric or 'missing'}")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise InputError(path, f"expected one frame, got {ds.NumberOfFrames}")
    try:
        stored = ds.pixel_array
    except (RuntimeError, NotImplementedError) as err:
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        raise InputError(
            path,
            f"cannot decode pixel data with transfer syntax {getattr(syntax, 'name', syntax)} "
            f"(JPEG needs pylibjpeg and pylibjpeg-libjpeg installed): {err}",
        ) from None
    except (ValueError, EOFError, OSError, IndexError, AttributeError) as err:
        raise InputError(path, f"corrupt or truncated pixel data ({err})") from None
    if stored.ndim != 2:
        raise InputError(path, f"expected a 2-D grayscale frame, got shape {stored.shape}")
    pixels = stored.astype(np.float32)
    if photometric == "MONOCHROME1":
        low, high = _stored_range(ds)
        pixels = (low + high) - pixels
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if slope != 1.0 or intercept != 0.0:
        pixels = pixels * np.float32(slope) + np.float32(intercept)
    return pixels


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A DICOM, PNG or JPEG file as a float32 (rows, cols) grayscale image.

    DICOMs go through :func:`read_dicom`; PNG/JPEG keep their bit depth (8 or 16) and colour
    images become grayscale (OpenCV's BGR/BGRA weights).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image not found")
    if path.suffix.lower() in (".dcm", ".dicom"):
        return read_dicom(path)
    pixels = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise InputError(path, "not a readable PNG/JPEG/DICOM image")
    if pixels.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if pixels.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        pixels = cv2.cvtColor(pixels, code)
    return pixels.astype(np.float32)
