"""The SIIM-ACR run-length encoding of pneumothorax masks.

Convention of the competition (it differs from the usual absolute, row-major RLE):

* The string holds ``offset length`` pairs. A cursor starts at flat index 0; each pair moves
  the cursor forward by ``offset``, sets ``length`` pixels from there, then moves the cursor
  forward by ``length``. Offsets are therefore *relative* to the end of the previous run.
* Flat indices run down the columns (column-major): index ``k`` is row ``k % height`` and
  column ``k // height``.
* ``-1`` means an empty mask (no pneumothorax).

The canonical string (what :func:`rle_encode` writes) has maximal runs, single spaces and no
leading or trailing blanks; ``rle_encode(rle_decode(s)) == s`` holds for every canonical ``s``.
"""

from __future__ import annotations

import numpy as np

EMPTY = "-1"


class RLEError(ValueError):
    """A run-length string that does not describe a mask of the given size."""


MAX_NUMBER = 2**31 - 1  # no image has this many pixels; larger numbers are corrupt rows
_DIGITS = frozenset("0123456789")


def _number(token: str) -> int:
    """A token as a plain non-negative decimal integer, or the row's RLEError.

    Stricter than ``int``: ``1_000``, ``+5``, superscript or other non-ASCII digits and
    anything past :data:`MAX_NUMBER` are refused (``int`` would accept the first three).
    """
    if token.startswith("-") and len(token) > 1 and set(token[1:]) <= _DIGITS:
        raise RLEError(f"negative number {token} in a run-length string")
    if not token or not set(token) <= _DIGITS:
        raise RLEError(f"run-length token {token[:20]!r} is not a plain non-negative "
                       "decimal integer")
    if len(token) > 10 or int(token) > MAX_NUMBER:
        raise RLEError(f"run-length number {token[:20]} is larger than any image "
                       f"({MAX_NUMBER})")
    return int(token)


def parse_rle(rle: str) -> np.ndarray:
    """Parse a run-length string into an ``(N, 2)`` int64 array of (offset, length) pairs.

    ``-1`` (with any surrounding blanks) parses to an empty array. Raises :class:`RLEError` for
    tokens that are not plain decimal digits (see :func:`_number`), negative or too large
    numbers, an odd count of numbers and a run of length 0 (it would give an annotated image
    an empty mask).
    """
    text = rle.strip()
    if text == EMPTY:
        return np.zeros((0, 2), dtype=np.int64)
    if not text:
        raise RLEError("empty run-length string (an empty mask is written '-1')")
    numbers = np.array([_number(token) for token in text.split()], dtype=np.int64)
    if numbers.size % 2:
        raise RLEError(f"odd count of numbers ({numbers.size}): runs come as offset/length pairs")
    pairs = numbers.reshape(-1, 2)
    if (pairs[:, 1] == 0).any():
        index = int(np.flatnonzero(pairs[:, 1] == 0)[0])
        raise RLEError(f"run {index + 1} has length 0 (an annotated region must cover a pixel)")
    return pairs


def rle_decode(rle: str, height: int, width: int) -> np.ndarray:
    """Decode a SIIM-ACR run-length string into a boolean mask of shape ``(height, width)``.

    Raises :class:`RLEError` for malformed strings and for runs that end past the image.
    """
    pairs = parse_rle(rle)
    size = height * width
    flat = np.zeros(size + 1, dtype=np.int32)
    if len(pairs):
        offsets, lengths = pairs[:, 0], pairs[:, 1]
        # Start of run i = all offsets up to and including i plus all lengths before i.
        starts = np.cumsum(offsets) + np.concatenate([[0], np.cumsum(lengths)[:-1]])
        ends = starts + lengths
        if ends[-1] > size:
            raise RLEError(
                f"runs end at pixel {int(ends[-1])}, past the {height}x{width} image "
                f"({size} pixels)"
            )
        np.add.at(flat, starts, 1)
        np.add.at(flat, ends, -1)
    filled = np.cumsum(flat[:size]) > 0
    return filled.reshape(width, height).T


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2-D mask (any dtype, non-zero = set) as a canonical SIIM-ACR run-length string."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode takes a 2-D mask, got shape {mask.shape}")
    flat = (mask != 0).T.reshape(-1).astype(np.int8)
    edges = np.diff(np.concatenate([[0], flat, [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if starts.size == 0:
        return EMPTY
    offsets = starts - np.concatenate([[0], ends[:-1]])
    pairs = np.stack([offsets, ends - starts], axis=1).reshape(-1)
    return " ".join(str(int(n)) for n in pairs)
