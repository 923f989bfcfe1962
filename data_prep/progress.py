"""A progress bar for long data-preparation loops (click's, on standard error)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import click

T = TypeVar("T")


@contextlib.contextmanager
def track(items: Iterable[T], *, label: str, length: int | None = None,
          enabled: bool = True) -> Iterator[Iterable[T]]:
    """Yield ``items`` wrapped in a progress bar when ``enabled`` (plain ``items`` otherwise)."""
    if not enabled:
        yield items
        return
    with click.progressbar(items, length=length, label=label, file=sys.stderr,
                           show_pos=True) as bar:
        yield bar
