"""Command groups whose commands arrive with later parts of the toolkit.

Each group already answers ``--help`` with what it is for, so the command tree users script
against is stable from the first release.
"""

from __future__ import annotations

import click


@click.group()
def export() -> None:
    """SavedModel export in the layout TensorFlow Serving watches."""


@click.group()
def predict() -> None:
    """Predictions from exported models or a TensorFlow Serving endpoint."""
