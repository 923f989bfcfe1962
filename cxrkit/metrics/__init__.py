"""Metrics and statistics of both studies (see ``docs/metrics.md``)."""

from cxrkit.metrics._checks import UndefinedMetric
from cxrkit.metrics.classification import (
    accuracy,
    bootstrap_ci,
    classification_summary,
    macro_auc,
    micro_auc,
    one_vs_rest_auc,
    precision_recall,
    roc_auc,
    roc_curve,
)
from cxrkit.metrics.explanation import diff_gradcam, ehr_auc, ehr_curve, thresholds
from cxrkit.metrics.saliency import (
    cc,
    correlation_coefficient,
    histogram_similarity,
    kl_divergence,
    nss,
    sim,
)
from cxrkit.metrics.statistics import (
    anova_tukey,
    markdown_table,
    mean_std,
    paired_ttest,
    tukey_markdown,
)

__all__ = ["UndefinedMetric", "accuracy", "anova_tukey", "bootstrap_ci", "cc",
           "classification_summary", "correlation_coefficient", "diff_gradcam", "ehr_auc",
           "ehr_curve",
           "histogram_similarity", "kl_divergence", "macro_auc", "markdown_table", "mean_std",
           "micro_auc",
           "nss", "one_vs_rest_auc", "paired_ttest", "precision_recall", "roc_auc",
           "roc_curve", "sim",
           "thresholds", "tukey_markdown"]
