"""File helpers the converters, the reader and the recipe engine share: checksums, atomic
writes, the names of a record folder's shards, and standard error silenced at the file
descriptor (the quiet console, and worker processes that inherit it)."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# ``<split>-00000-of-000NN.tfrecord[.gz]``: every shard a conversion writes (docs/data.md).
SHARD_NAME = re.compile(r"(train|validation|test)-\d{5}-of-\d{5}\.tfrecord(\.gz)?")


def sha256_file(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text_atomic(path: str | os.PathLike, text: str | bytes) -> Path:
    """Writes ``text`` (or bytes) under a temporary name, then renames it: the file is whole
    or absent."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    if isinstance(text, bytes):
        partial.write_bytes(text)
    else:
        partial.write_text(text)
    partial.replace(path)
    return path


@contextmanager
def stderr_silenced() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null inside the block (C++ writers and the child
    processes started in it included)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
