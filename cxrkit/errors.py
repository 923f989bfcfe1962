"""Errors a user can cause and fix.

Everything that stems from bad input (a corrupt DICOM, a malformed RLE row, a missing file)
raises :class:`InputError`, which names the file and the problem in one line. The command line
prints that line and exits non-zero instead of showing a traceback; library users can catch it
and record the problem (the converters list such inputs as skipped in their manifest).
"""

from __future__ import annotations

import os


class CxrkitError(Exception):
    """Base class of every error cxrkit raises on purpose."""


class InputError(CxrkitError, ValueError):
    """A named input is missing, unreadable or malformed.

    Args:
        source: the file (or file and row, e.g. ``"train-rle.csv:17"``) the problem is in.
        problem: what is wrong with it, in words a user can act on.
    """

    def __init__(self, source: str | os.PathLike, problem: str):
        self.source = os.fspath(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")
