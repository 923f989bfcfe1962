"""Opening the CSV tables of the raw datasets, with one clear error for every way they fail.

A table that is missing, unreadable, not UTF-8 text (Latin-1, a binary file given by mistake)
or not well-formed CSV (an unterminated quote that swallows the rest of the file into one
field) raises :class:`~cxrkit.errors.InputError` naming the file, whether the problem shows
when it is opened or rows later.
"""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from cxrkit.errors import InputError


@contextmanager
def open_table(path: str | os.PathLike, what: str) -> Iterator[TextIO]:
    """``open(path)`` as UTF-8 text (a byte-order mark is dropped) for the ``csv`` module;
    a ``.gz`` file is read through gzip.

    ``what`` names the table in messages (``"the mask table"``).
    """
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
            yield handle
    except (OSError, EOFError) as err:  # gzip raises both for a damaged file
        raise InputError(path, f"cannot read {what} ({err.strerror or err})"
                         if isinstance(err, OSError) and err.strerror else
                         f"cannot read {what} ({err})") from None
    except UnicodeDecodeError as err:
        raise InputError(path, f"{what} is not UTF-8 text ({err.reason} at byte "
                               f"{err.start}); is it the right file?") from None
    except csv.Error as err:
        hint = (" (an unterminated quote runs to the end of the file?)"
                if "field larger" in str(err) else "")
        raise InputError(path, f"{what} is not well-formed CSV: {err}{hint}") from None
