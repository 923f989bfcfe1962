"""Reading SIIM-ACR mask tables (``train-rle.csv``, ``stage_2_train.csv``) robustly.

Real copies of the table differ: the header may be ``ImageId, EncodedPixels`` (blank before
the second name), ``ImageId,EncodedPixels`` or a renamed ``fname,mask``; the file may start with
a UTF-8 byte-order mark; values may carry leading blanks (``, -1``). One row is one annotated
region, so an image's mask is the union of all its rows; ``-1`` marks a healthy image.

Rows that cannot be trusted never become a wrong mask: a malformed row, or an image that is
both ``-1`` and annotated, puts the image in :attr:`RleTable.bad_images` and records an
:class:`~cxrkit.errors.InputError` naming the file and line in :attr:`RleTable.problems`.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

from cxrkit.errors import InputError
from data_prep.siim_acr.rle import RLEError, parse_rle
from data_prep.tables import open_table

ID_COLUMNS = ("imageid", "image_id", "fname")
RLE_COLUMNS = ("encodedpixels", "encoded_pixels", "mask")


@dataclass
class RleTable:
    """The rows of a SIIM-ACR mask table, grouped by image.

    Attributes:
        regions: image id -> the run-length strings of its annotated regions (an empty list for a
            healthy image).
        problems: one :class:`InputError` per rejected row or contradictory image.
        bad_images: ids whose mask cannot be trusted; converters skip them.
    """

    path: str
    regions: dict[str, list[str]] = field(default_factory=dict)
    problems: list[InputError] = field(default_factory=list)
    bad_images: set[str] = field(default_factory=set)

    def label(self, image_id: str) -> int:
        """1 if the image has at least one annotated region, else 0."""
        return int(bool(self.regions[image_id]))


def _column(header: list[str], names: tuple[str, ...], path: str) -> int:
    normalised = [name.strip().lower() for name in header]
    for name in names:
        if name in normalised:
            return normalised.index(name)
    raise InputError(
        path,
        f"unrecognised header {','.join(header)!r}: expected ImageId,EncodedPixels "
        "(or the fname,mask variant)",
    )


def read_rle_csv(path: str | os.PathLike) -> RleTable:
    """Read a SIIM-ACR mask table; see the module docstring for the accepted variants."""
    path = os.fspath(path)
    with open_table(path, "the mask table") as handle:
        return _parse(csv.reader(handle), path)


def _parse(reader, path: str) -> RleTable:
    header = next(reader, None)
    if header is None:
        raise InputError(path, "the mask table is empty (no header)")
    id_col = _column(header, ID_COLUMNS, path)
    rle_col = _column(header, RLE_COLUMNS, path)
    table = RleTable(path=path)
    healthy: set[str] = set()
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(id_col, rle_col):
            table.problems.append(InputError(where, f"row has {len(row)} fields, expected 2"))
            continue
        image_id, rle = row[id_col].strip(), row[rle_col].strip()
        if not image_id:
            table.problems.append(InputError(where, "row has no image id"))
            continue
        regions = table.regions.setdefault(image_id, [])
        try:
            empty = len(parse_rle(rle)) == 0
        except RLEError as err:
            table.problems.append(InputError(where, f"image {image_id}: {err}"))
            table.bad_images.add(image_id)
            continue
        if (empty and regions) or (not empty and image_id in healthy):
            table.problems.append(
                InputError(where, f"image {image_id} is marked both healthy (-1) and annotated")
            )
            table.bad_images.add(image_id)
        if empty:
            healthy.add(image_id)
        else:
            regions.append(rle)
    return table
