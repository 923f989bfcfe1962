"""Classification metrics with the studies' conventions (docs/study.md).

- ROC AUC is exact and rank-based (the Mann-Whitney statistic with mid-ranks for ties), not
  Keras' binned approximation. Multi-class: one-vs-rest AUC per class, their macro mean, and
  the micro average (:func:`micro_auc`: one AUC over every (image, class) pair of the
  one-hot labels and the scores). Table 4.1's overall AUC is the micro average: the authors'
  code computes it, and it reproduces the published numbers where the macro mean does not
  (4 of 6 columns). :func:`classification_summary` reports both, labelled.
- Precision and recall in Table 3.1 are those of the positive class (pneumothorax,
  ``average="binary"``): with support weighting recall would always equal accuracy, and the
  thesis' recall differs from its accuracy in 8 of its 9 rows. ``"macro"`` and
  ``"weighted"`` are available.
- :func:`bootstrap_ci` gives a percentile confidence interval by resampling cases.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata


def _labels(y_true) -> np.ndarray:
    y = np.asarray(y_true).reshape(-1)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("labels must be integers")
        y = y.astype(np.int64)
    return y


def accuracy(y_true, y_pred) -> float:
    """Fraction of exact matches."""
    y, p = _labels(y_true), _labels(y_pred)
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} predictions")
    return float(np.mean(y == p))


def precision_recall(y_true, y_pred, *, average: str = "binary",
                     num_classes: int | None = None) -> tuple[float, float]:
    """Precision and recall; a class never predicted has precision 0 (as scikit-learn)."""
    y, p = _labels(y_true), _labels(y_pred)
    k = num_classes or int(max(y.max(), p.max())) + 1
    tp = np.array([np.sum((p == c) & (y == c)) for c in range(k)], float)
    predicted = np.array([np.sum(p == c) for c in range(k)], float)
    support = np.array([np.sum(y == c) for c in range(k)], float)
    prec = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), 0.0)
    rec = np.where(support > 0, tp / np.where(support > 0, support, 1), 0.0)
    if average == "binary":
        return float(prec[1]), float(rec[1])
    if average == "macro":
        return float(prec.mean()), float(rec.mean())
    if average == "weighted":
        w = support / support.sum()
        return float((prec * w).sum()), float((rec * w).sum())
    raise ValueError(f"average must be 'binary', 'macro' or 'weighted', not {average!r}")


def roc_auc(y_true, scores) -> float:
    """Exact binary ROC AUC of ``scores`` for the positive class 1 (ties count one half)."""
    y = _labels(y_true)
    s = np.asarray(scores, np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"{len(y)} labels but {len(s)} scores")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    pos, neg = int(np.sum(y == 1)), int(np.sum(y != 1))
    if pos == 0 or neg == 0:
        raise ValueError("ROC AUC needs both positive and negative cases")
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def one_vs_rest_auc(y_true, probabilities) -> dict[int, float]:
    """AUC of each class against the rest, from (N, K) class scores."""
    y = _labels(y_true)
    probs = np.asarray(probabilities, np.float64)
    if probs.ndim != 2 or len(probs) != len(y):
        raise ValueError(f"probabilities must be (N, K) with N = {len(y)}, got {probs.shape}")
    return {c: roc_auc((y == c).astype(int), probs[:, c]) for c in range(probs.shape[1])}


def macro_auc(y_true, probabilities) -> float:
    """The mean of the one-vs-rest AUCs (binary: the AUC of class 1's score)."""
    probs = np.asarray(probabilities, np.float64)
    if probs.ndim == 1 or probs.shape[1] == 1:
        return roc_auc(y_true, probs.reshape(-1))
    if probs.shape[1] == 2:
        return roc_auc(y_true, probs[:, 1])
    return float(np.mean(list(one_vs_rest_auc(y_true, probs).values())))


def micro_auc(y_true, probabilities) -> float:
    """The micro-averaged AUC of (N, K) class scores: one binary AUC over all N x K pairs of
    one-hot labels and scores (scikit-learn's ``average="micro"``)."""
    y = _labels(y_true)
    probs = np.asarray(probabilities, np.float64)
    if probs.ndim != 2 or len(probs) != len(y):
        raise ValueError(f"probabilities must be (N, K) with N = {len(y)}, got {probs.shape}")
    one_hot = (y[:, None] == np.arange(probs.shape[1])[None]).astype(int)
    return roc_auc(one_hot.reshape(-1), probs.reshape(-1))


def bootstrap_ci(metric: Callable, y_true, scores, *, n: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile ``1 - alpha`` interval of ``metric(y_true, scores)`` over case resamples.

    Resamples on which the metric is undefined (e.g. a class missing for an AUC) are drawn
    again; at most ``10 * n`` draws are made.
    """
    y, s = np.asarray(y_true), np.asarray(scores)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(10 * n):
        idx = rng.integers(0, len(y), len(y))
        try:
            values.append(metric(y[idx], s[idx]))
        except ValueError:
            continue
        if len(values) == n:
            break
    if len(values) < n:
        raise ValueError("too few resamples where the metric is defined")
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def classification_summary(y_true, probabilities, class_names: list[str]) -> dict:
    """The tables' columns: accuracy and AUC; for two classes the positive class's (class 1)
    precision and recall (Table 3.1); for more, the per-class AUCs and the overall AUC as the
    micro average (``auc``, Table 4.1) with the macro mean beside it (``auc_macro``)."""
    probs = np.asarray(probabilities, np.float64)
    if probs.ndim == 1 or probs.shape[1] == 1:  # single sigmoid output
        probs = np.stack([1 - probs.reshape(-1), probs.reshape(-1)], axis=1)
    y = _labels(y_true)
    predicted = probs.argmax(axis=1)
    summary = {"n": int(len(y)), "accuracy": accuracy(y, predicted)}
    if probs.shape[1] == 2:
        precision, recall = precision_recall(y, predicted, average="binary", num_classes=2)
        summary.update(precision=precision, recall=recall, positive_class=class_names[1],
                       auc=macro_auc(y, probs))
    else:
        summary.update(auc=micro_auc(y, probs), auc_average="micro",
                       auc_macro=macro_auc(y, probs),
                       auc_per_class={class_names[c]: v
                                      for c, v in one_vs_rest_auc(y, probs).items()})
    return summary


def roc_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct score (from (0, 0) to (1, 1))."""
    y = _labels(y_true)
    s = np.asarray(scores, np.float64).reshape(-1)
    order = np.argsort(-s, kind="stable")
    y, s = y[order] == 1, s[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = np.cumsum(~y)[last_of_tie]
    pos, neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fp / neg], np.r_[0.0, tp / pos]
