"""Run reports, one module per study layout (``[report] layout``; :data:`REPORTS`).

A report function takes the run folder and keyword arguments ``results`` (per stage, from
:func:`cxrkit.recipes.evaluate.evaluate_stage`), ``test`` (the test split's arrays),
``final_model``, ``stage_models`` (enabled stage name -> its model, sharing the trained
parts; every stage the main process trained, the final one and ``[report] gradcam_stage``:
the other stages of a side process are evaluated there and have results only), ``recipe``
(:class:`~cxrkit.recipes.schema.Recipe`), ``class_names``, ``demo_note`` and ``trace``; it
writes ``metrics.json``, ``report.md`` and ``figures/`` and
returns the metrics document. A layout is registered here by one entry that imports its module
when a report is written (so checking a recipe does not import TensorFlow).
"""

from cxrkit.recipes.registry import Registry

REPORTS = Registry("report layout")


@REPORTS.register("mlmi2024")
def mlmi2024(out, **inputs) -> dict:
    """Tables 4.1 and 4.2, Grad-CAM against gaze, Fig. 4.2 and ROC curves."""
    from cxrkit.recipes.reports.mlmi2024 import write_report

    return write_report(out, **inputs)


@REPORTS.register("mlmi2023")
def mlmi2023(out, **inputs) -> dict:
    """Tables 3.1 and 3.2, EHR AUC, ANOVA + Tukey, Fig. 3.1."""
    from cxrkit.recipes.reports.mlmi2023 import write_report

    return write_report(out, **inputs)


__all__ = ["REPORTS"]
