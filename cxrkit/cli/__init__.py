"""The ``cxrkit`` command line.

Every command group lives in its own module; this one wires them together and turns the
errors a user can fix (:class:`~cxrkit.errors.CxrkitError`, and operating-system errors such
as an unwritable output folder) into one line on standard error and
exit status 1, never a traceback.
"""

from __future__ import annotations

import click

from cxrkit import __version__, gc_policy
from cxrkit.cli.data import data
from cxrkit.cli.explain import explain
from cxrkit.cli.models import models
from cxrkit.cli.quiet import quiet_tensorflow
from cxrkit.cli.recipe import recipe
from cxrkit.cli.serving import export, predict
from cxrkit.errors import CxrkitError


class _Cli(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CxrkitError as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:  # e.g. an output folder that cannot be written
            where = err.filename if err.filename is not None else "cxrkit"
            raise click.ClickException(f"{where}: {err.strerror or err}") from None


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cxrkit")
@click.option("--verbose", is_flag=True,
              help="Show TensorFlow's own log lines (hidden by default; see cxrkit.cli.quiet).")
def cli(verbose: bool) -> None:
    """Interpretable chest X-ray diagnosis with Keras 3 and TensorFlow.

    Prepare SIIM-ACR and EGD-CXR data, train and compare the models of the MLMI 2023 Grad-CAM
    benchmark and the MLMI 2024 gaze-guided three-stage network, judge explanations, and
    export models for TensorFlow Serving.
    """
    quiet_tensorflow(verbose)


for group in (data, models, explain, recipe, export, predict):
    cli.add_command(group)


def main() -> None:
    """Console-script entry point, with cxrkit's collector policy (:mod:`cxrkit.gc_policy`)."""
    gc_policy.for_traced_models()
    try:
        cli(prog_name="cxrkit")
    finally:  # click ends every command with SystemExit
        gc_policy.at_exit()
