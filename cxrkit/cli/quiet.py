"""A quiet console: TensorFlow's start-up lines stay off the terminal unless ``--verbose``.

On a CPU-only machine TensorFlow prints, while it is imported, lines such as "Could not find
cuda drivers on your machine, GPU will not be used" and the oneDNN notice, and on the first
op an ``E`` line for the failed CUDA probe. None of them is news to a user without a GPU, and
before an ``Error:`` line they make one promised line several. Two measures, both harmless:

* ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the user set it) hides TensorFlow's C++ log lines;
* the lines written while ``tensorflow`` is imported come from absl before its logging is set
  up, which that variable cannot reach, so standard error is pointed at ``/dev/null`` for the
  import itself only. A failed import still raises its Python exception, which is shown.

One Python-side message is filtered too: TensorFlow's "N out of the last M calls to
<function ...> triggered tf.function retracing". Evaluating several models traces each model's
predict step once, which is the work that has to be done, not the repeated retracing of one
function that the message is meant to catch.

Apache Beam (``cxrkit data ... --runner beam``) logs its pipeline plumbing (worker start-up,
channels, sink renames) at INFO and WARNING; its logger is set to ERROR (its workers' level is
set in :func:`data_prep.beam.beam_options`).

``cxrkit --verbose`` (or ``CXRKIT_VERBOSE=1``) leaves all of them alone.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import sys

from cxrkit.files import stderr_silenced


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` like the normal path finder, but executes it with stderr silenced."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: later lookups take the normal route
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            with stderr_silenced():
                execute(module)

        spec.loader.exec_module = exec_module
        return spec


class _NotRetracingNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_tensorflow(verbose: bool) -> None:
    """Apply the measures of the module docstring, unless ``verbose``."""
    if verbose or os.environ.get("CXRKIT_VERBOSE") == "1":
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _NotRetracingNotices) for f in logger.filters):
        logger.addFilter(_NotRetracingNotices())
    if "tensorflow" not in sys.modules and not any(
            isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
