"""The studies' statistics, from scipy, and Markdown tables of their results.

- :func:`anova_tukey`: one-way ANOVA (``scipy.stats.f_oneway``) and Tukey's HSD pairwise
  comparisons (``scipy.stats.tukey_hsd``) across groups — the 2023 study's test across models
  on DiffGradCAM;
- :func:`paired_ttest`: two-sided paired t-test (``scipy.stats.ttest_rel``) — the 2024 study's
  comparison of saliency metrics per test image.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def anova_tukey(groups: dict[str, np.ndarray], *, confidence: float = 0.95) -> dict:
    """ANOVA F and p, and one row per pair: difference of means, confidence interval, p."""
    if len(groups) < 2:
        raise ValueError("ANOVA needs at least two groups")
    names = list(groups)
    samples = [np.asarray(groups[k], np.float64).reshape(-1) for k in names]
    for name, sample in zip(names, samples, strict=True):
        if len(sample) < 2:
            raise ValueError(f"group {name!r} needs at least two values")
    anova = stats.f_oneway(*samples)
    tukey = stats.tukey_hsd(*samples)
    interval = tukey.confidence_interval(confidence)
    pairs = [{"a": names[i], "b": names[j],
              "mean_difference": float(samples[i].mean() - samples[j].mean()),
              "low": float(interval.low[i, j]), "high": float(interval.high[i, j]),
              "p": float(tukey.pvalue[i, j])}
             for i in range(len(names)) for j in range(i + 1, len(names))]
    return {"f": float(anova.statistic), "p": float(anova.pvalue),
            "confidence": confidence, "tukey": pairs}


def paired_ttest(a, b) -> dict:
    """Two-sided paired t-test of ``a`` against ``b`` (same cases, same order)."""
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError("a paired t-test needs at least two pairs")
    result = stats.ttest_rel(a, b)
    return {"t": float(result.statistic), "p": float(result.pvalue),
            "mean_difference": float(np.mean(a - b)), "n": int(len(a))}


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
    return str(value)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table; floats with four decimals."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def tukey_markdown(result: dict) -> str:
    """:func:`anova_tukey`'s result: the ANOVA line and the pairwise table."""
    head = f"One-way ANOVA: F = {result['f']:.4f}, p = {_cell(result['p'])}\n\n"
    level = round(result["confidence"] * 100)
    rows = [[r["a"], r["b"], r["mean_difference"], f"[{r['low']:.4f}, {r['high']:.4f}]",
             r["p"]] for r in result["tukey"]]
    return head + markdown_table(["model A", "model B", "mean A − B", f"{level} % CI",
                                  "Tukey p"], rows)


def mean_std(values) -> str:
    """``mean ± std`` as the tables print it."""
    values = np.asarray(values, np.float64)
    return f"{values.mean():.3f} ± {values.std():.3f}"
