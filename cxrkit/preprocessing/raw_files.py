"""Raw image files (DICOM, PNG, JPEG) to plain grayscale pixel arrays.

:func:`read_dicom` returns pixels in the MONOCHROME2 sense (higher = brighter = denser) in
modality units: MONOCHROME1 images are inverted over their stored value range, then the
rescale slope and intercept are applied. JPEG Baseline files (the transfer syntax of the real
SIIM-ACR images) decode through pylibjpeg + pylibjpeg-libjpeg.

Contract for hostile input: a file that cannot be read as one grayscale image, for whatever
reason its bytes give (a truncated element, an unknown VR, a header value that does not parse,
a pixel-data length that does not match the header), raises :class:`~cxrkit.errors.InputError`
naming the file and the problem. No other exception leaves :func:`read_dicom` or
:func:`read_image` for a malformed file; tests flip random bytes of real files to hold that.

Only pixel data leaves this module: no patient-identifying attribute (name, birth date,
accession number, ...) is returned, so none can reach a record, a log or a report by way of it.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.errors import BytesLengthException, InvalidDicomError

from cxrkit.errors import InputError

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
MAX_SIDE = 16384  # no radiograph is larger; a bigger header value is a corrupt file
MAX_FILE_BYTES = 1 << 31

# What pydicom raises while parsing bytes that are not a well-formed DICOM data set (found by
# flipping bytes of real files): each is a property of the file, never of the program, so each
# becomes that file's InputError. The list is explicit so that a programming error elsewhere
# (a NameError, say) is not mistaken for a bad file.
MALFORMED = (BytesLengthException, struct.error, NotImplementedError, ValueError, TypeError,
             KeyError, IndexError, AttributeError, OverflowError, EOFError, OSError,
             RuntimeError)


class _Problem(Exception):
    """A problem of the file at hand, turned into an InputError by :func:`read_dicom`."""


def _one_line(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _header(ds: pydicom.Dataset, keyword: str, default: object | None = None) -> object:
    """A header element's value, or the problem it has as an InputError-ready message."""
    try:
        value = ds.get(keyword, default)
    except MALFORMED as err:
        raise _Problem(f"header element {keyword} cannot be parsed ({_one_line(err)})") from None
    return default if value is None or value == "" else value


def _header_number(ds: pydicom.Dataset, keyword: str, default: float | None, kind=int):
    value = _header(ds, keyword, default)
    if value is None:
        raise _Problem(f"header element {keyword} is missing")
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise _Problem(f"header element {keyword} holds {str(value)[:40]!r}, not a "
                       f"{'whole ' if kind is int else ''}number") from None
    if not np.isfinite(number):
        raise _Problem(f"header element {keyword} holds {number}, not a finite number")
    return number


def _stored_range(bits: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _pixels(ds: pydicom.Dataset) -> np.ndarray:
    if "PixelData" not in ds:
        raise _Problem("DICOM has no pixel data (truncated or not an image)")
    photometric = str(_header(ds, "PhotometricInterpretation", "")).strip()
    if photometric not in MONOCHROME:
        raise _Problem(f"expected a grayscale image, got PhotometricInterpretation "
                       f"{photometric[:40] or 'missing'}")
    frames = _header_number(ds, "NumberOfFrames", 1)
    if frames != 1:
        raise _Problem(f"expected one frame, got NumberOfFrames {frames}")
    rows, cols = _header_number(ds, "Rows", None), _header_number(ds, "Columns", None)
    if not (0 < rows <= MAX_SIDE and 0 < cols <= MAX_SIDE):
        raise _Problem(f"image size {rows}x{cols} is outside 1..{MAX_SIDE} pixels a side")
    allocated = _header_number(ds, "BitsAllocated", None)
    if allocated not in (8, 16, 32):
        raise _Problem(f"BitsAllocated {allocated} is not 8, 16 or 32")
    bits = _header_number(ds, "BitsStored", allocated)
    if not 1 <= bits <= allocated:
        raise _Problem(f"BitsStored {bits} does not fit BitsAllocated {allocated}")
    signed = _header_number(ds, "PixelRepresentation", 0) == 1
    slope = _header_number(ds, "RescaleSlope", 1, float) or 1.0
    intercept = _header_number(ds, "RescaleIntercept", 0, float)
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID", None) if meta is not None else None
    if syntax is not None and not syntax.is_compressed:
        expected = rows * cols * allocated // 8
        if len(ds.PixelData) < expected:
            raise _Problem(f"truncated pixel data: {len(ds.PixelData)} bytes where the "
                           f"{rows}x{cols} header needs {expected}")
    try:
        stored = ds.pixel_array
    except (RuntimeError, NotImplementedError) as err:
        name = getattr(syntax, "name", syntax or "unknown")
        raise _Problem(f"cannot decode pixel data with transfer syntax {name} (JPEG needs "
                       f"pylibjpeg and pylibjpeg-libjpeg installed): {_one_line(err)}") from None
    if stored.ndim != 2:
        raise _Problem(f"expected a 2-D grayscale frame, got shape {stored.shape}")
    pixels = stored.astype(np.float32)
    if photometric == "MONOCHROME1":
        low, high = _stored_range(bits, signed)
        pixels = (low + high) - pixels
    if slope != 1.0 or intercept != 0.0:
        pixels = pixels * np.float32(slope) + np.float32(intercept)
    if not np.isfinite(pixels).all():
        raise _Problem("pixel values overflow after the rescale slope and intercept")
    return pixels


@contextmanager
def _file_problems(path: str) -> Iterator[None]:
    """Turns what parsing ``path`` raises (see :data:`MALFORMED`) into its InputError."""
    # pydicom warns about values it cannot validate; every such value either parses or
    # becomes this file's InputError, so its warnings would only repeat the same news.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        except FileNotFoundError:
            raise InputError(path, "DICOM file not found") from None
        except InvalidDicomError:
            raise InputError(path, "not a DICOM file (no DICM preamble)") from None
        except _Problem as problem:
            raise InputError(path, str(problem)) from None
        except MemoryError:
            raise InputError(path, "corrupt DICOM: a length field asks for more memory than "
                                   "this machine has") from None
        except MALFORMED as err:
            raise InputError(path, f"corrupt or truncated DICOM ({type(err).__name__}: "
                                   f"{_one_line(err)})") from None


def read_dicom(path: str | os.PathLike) -> np.ndarray:
    """Read a single-frame grayscale DICOM as a float32 ``(rows, columns)`` array.

    Raises:
        InputError: the file is missing, is not DICOM, is truncated or corrupt (in its header
            or its pixels), has a header value that does not parse, is not single-frame
            grayscale, or uses a compression no installed decoder reads.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "DICOM file not found")
    if os.path.getsize(path) > MAX_FILE_BYTES:
        raise InputError(path, "file is larger than 2 GiB: not a single radiograph")
    with _file_problems(path):
        return _pixels(pydicom.dcmread(path))


def read_dicom_uid(path: str | os.PathLike) -> str:
    """The SOP Instance UID of a DICOM file, read without its pixels.

    Raises:
        InputError: the file is missing, not DICOM, corrupt, or has no SOP Instance UID.
    """
    path = os.fspath(path)
    with _file_problems(path):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uid = str(_header(ds, "SOPInstanceUID", "")).strip()
    if not uid:
        raise InputError(path, "DICOM has no SOPInstanceUID to identify the image "
                               "(truncated, or not an image?)")
    return uid


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A DICOM, PNG or JPEG file as a float32 (rows, cols) grayscale image.

    DICOMs go through :func:`read_dicom`; PNG/JPEG keep their bit depth (8 or 16: a 16-bit PNG
    is not squeezed to 8 bits here, the preprocessing scales it) and colour images become
    grayscale (OpenCV's BGR/BGRA weights).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image not found")
    if path.suffix.lower() in DICOM_SUFFIXES:
        return read_dicom(path)
    pixels = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise InputError(path, "not a readable PNG/JPEG/DICOM image")
    if pixels.ndim == 3:
        if pixels.shape[2] not in (3, 4):
            raise InputError(path, f"expected grey, RGB or RGBA, got {pixels.shape[2]} "
                                   "channels")
        code = cv2.COLOR_BGRA2GRAY if pixels.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        pixels = cv2.cvtColor(pixels, code)
    if pixels.dtype not in (np.uint8, np.uint16):
        raise InputError(path, f"expected 8- or 16-bit pixels, got {pixels.dtype}")
    return pixels.astype(np.float32)
