"""Metrics against brute-force numpy / scipy references and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cxrkit import metrics as M

RNG = np.random.default_rng(7)


def _brute_auc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    return wins / (len(pos) * len(neg))


def test_auc_is_exact_with_ties():
    y = RNG.integers(0, 2, 200)
    s = np.round(RNG.random(200) + 0.3 * y, 1)  # rounding makes many ties
    assert M.roc_auc(y, s) == pytest.approx(_brute_auc(y, s), abs=1e-12)
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_one_vs_rest_and_macro_auc():
    y = RNG.integers(0, 3, 90)
    probs = RNG.dirichlet(np.ones(3), 90)
    per_class = M.one_vs_rest_auc(y, probs)
    for c in range(3):
        assert per_class[c] == pytest.approx(_brute_auc((y == c).astype(int), probs[:, c]))
    assert M.macro_auc(y, probs) == pytest.approx(np.mean(list(per_class.values())))


def test_precision_recall_conventions():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 1, 0, 1, 2, 2])
    # per class precision: 2/2, 1/2, 1/2 ; recall: 2/3, 1/2, 1/1 ; support 3, 2, 1
    prec, rec = M.precision_recall(y, p, average="macro")
    assert (prec, rec) == pytest.approx(((1 + .5 + .5) / 3, (2 / 3 + .5 + 1) / 3))
    prec, rec = M.precision_recall(y, p, average="weighted")  # recall equals accuracy
    assert prec == pytest.approx((3 * 1 + 2 * .5 + 1 * .5) / 6)
    assert rec == pytest.approx(M.accuracy(y, p)) and rec == pytest.approx(4 / 6)
    assert M.precision_recall([0, 1, 1], [1, 1, 0], average="binary") == (0.5, 0.5)


def test_table_3_1_reports_the_positive_class():
    """An unbalanced toy: 8 healthy, 2 pneumothorax. The model finds one of the two positives
    and raises one false alarm. Positive-class recall 1/2 and precision 1/2 by hand; accuracy
    8/10 (which a support-weighted recall would have copied)."""
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    p1 = np.array([.1, .2, .1, .3, .2, .1, .4, .9, .8, .3])  # predicted 1: images 7 and 8
    summary = M.classification_summary(y, p1[:, None], ["healthy", "pneumothorax"])
    assert summary["accuracy"] == pytest.approx(0.8)
    assert summary["recall"] == pytest.approx(0.5) and summary["precision"] == pytest.approx(0.5)
    assert summary["positive_class"] == "pneumothorax"
    _, weighted_recall = M.precision_recall(y, (p1 > 0.5).astype(int), average="weighted")
    assert weighted_recall == pytest.approx(summary["accuracy"]) != summary["recall"]


def test_micro_auc_by_hand_on_a_three_class_toy():
    """Three images, three classes: the micro AUC is one AUC over the 9 (image, class) pairs.
    Positives (the true class's scores): .6, .5, .2; negatives: .3, .1, .2, .3, .1, .7.
    .6 and .5 beat 5 negatives each (not .7); .2 beats the two .1 and ties one .2:
    (5 + 5 + 2.5) / 18. The macro mean differs: one-vs-rest AUCs 1, 1/2, 1/2."""
    y = np.array([0, 1, 2])
    probs = np.array([[.6, .3, .1], [.2, .5, .3], [.1, .7, .2]])
    assert M.micro_auc(y, probs) == pytest.approx(12.5 / 18)
    summary = M.classification_summary(y, probs, ["Normal", "CHF", "pneumonia"])
    assert summary["auc"] == pytest.approx(12.5 / 18) and summary["auc_average"] == "micro"
    assert summary["auc_macro"] == pytest.approx(2 / 3) == M.macro_auc(y, probs)


def test_bootstrap_interval_contains_the_estimate():
    y = RNG.integers(0, 2, 100)
    s = RNG.random(100) + 0.5 * y
    low, high = M.bootstrap_ci(M.roc_auc, y, s, n=200)
    assert low < M.roc_auc(y, s) < high and low > 0.5


def test_ehr_hand_worked_cases():
    mask = np.zeros((10, 10))
    mask[2:5, 3:7] = 1  # area fraction 0.12
    curve = M.ehr_curve(mask.copy(), mask)
    assert curve[0] == pytest.approx(0.12) and np.allclose(curve[1:], 1.0)
    c = 0.37
    curve = M.ehr_curve(np.full((10, 10), c), mask)
    t = M.thresholds(100)
    np.testing.assert_allclose(curve, np.where(t <= c, 0.12, 0.0))
    assert M.ehr_auc(np.full((10, 10), c), mask) == pytest.approx(
        np.trapezoid(np.where(t <= c, 0.12, 0.0), t))
    zeros = M.ehr_curve(np.zeros((10, 10)), mask)
    assert zeros[0] == pytest.approx(0.12) and not zeros[1:].any()


def test_ehr_and_diff_gradcam_against_brute_force():
    heat = RNG.random((4, 16, 16))
    masks = RNG.random((4, 16, 16)) > 0.7
    t = np.arange(50) / 50
    for weighted in (False, True):
        got = M.ehr_curve(heat, masks, steps=50, weighted=weighted)
        for i in range(4):
            h = np.where(heat[i] < 0.1, 0, heat[i]) if weighted else heat[i]
            w = h if weighted else np.ones_like(h)
            want = [(w * (h >= tk) * masks[i]).sum() / (w * (h >= tk)).sum()
                    if (w * (h >= tk)).sum() > 0 else 0 for tk in t]
            np.testing.assert_allclose(got[i], want)
        np.testing.assert_allclose(M.ehr_auc(heat, masks, steps=50, weighted=weighted),
                                   np.trapezoid(got, t, axis=1))
    diff = M.diff_gradcam(heat, masks)
    want = [heat[i][masks[i]].mean() - heat[i][~masks[i]].mean() for i in range(4)]
    np.testing.assert_allclose(diff, want)
    assert isinstance(M.diff_gradcam(heat[0], masks[0]), float)
    assert M.diff_gradcam(masks[0].astype(float), masks[0]) == pytest.approx(1.0)


def test_saliency_metrics_against_references():
    pred, gaze = RNG.random((3, 12, 12)), RNG.random((3, 12, 12))
    gaze[1, :6] = 0
    for i in range(3):
        p, q = pred[i] / pred[i].sum(), gaze[i] / gaze[i].sum()
        assert M.kl_divergence(pred[i], gaze[i]) == pytest.approx(
            float((q * (np.log(q + 1e-7) - np.log(p + 1e-7))).sum()))
        assert M.cc(pred[i], gaze[i]) == pytest.approx(
            stats.pearsonr(pred[i].ravel(), gaze[i].ravel()).statistic)
        assert M.sim(pred[i], gaze[i]) == pytest.approx(float(np.minimum(p, q).sum()))
    np.testing.assert_allclose(M.histogram_similarity(pred, gaze),
                               [M.sim(pred[i], gaze[i]) for i in range(3)])
    assert M.kl_divergence(gaze[0], gaze[0] * 5) == pytest.approx(0.0, abs=1e-9)
    assert M.sim(gaze[0], gaze[0]) == pytest.approx(1.0)
    fix = np.zeros((12, 12))
    fix[3, 4] = fix[7, 7] = 1
    z = (pred[0] - pred[0].mean()) / pred[0].std()
    assert M.nss(pred[0], fix) == pytest.approx((z[3, 4] + z[7, 7]) / 2)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: M.diff_gradcam(np.ones((4, 4)), np.zeros((4, 4))), "mask is empty"),
    (lambda: M.kl_divergence(np.zeros((4, 4)), np.ones((4, 4))), "all zero"),
    (lambda: M.cc(np.ones((4, 4)), np.eye(4)), "constant map"),
    (lambda: M.ehr_auc(np.ones((4, 4)), np.ones((4, 5))), "differ in shape"),
    (lambda: M.sim(np.full((4, 4), np.nan), np.ones((4, 4))), "NaN"),
    (lambda: M.roc_auc([1, 1], [0.2, 0.3]), "both positive and negative"),
])
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_anova_tukey_and_paired_ttest_against_formulas():
    groups = {"a": RNG.normal(0, 1, 20), "b": RNG.normal(0.1, 1, 20), "c": RNG.normal(2, 1, 20)}
    result = M.anova_tukey(groups)
    samples = list(groups.values())
    grand = np.concatenate(samples).mean()
    between = sum(len(s) * (s.mean() - grand) ** 2 for s in samples) / 2
    within = sum(((s - s.mean()) ** 2).sum() for s in samples) / (60 - 3)
    assert result["f"] == pytest.approx(between / within)
    assert result["p"] == pytest.approx(stats.f.sf(between / within, 2, 57))
    pairs = {(r["a"], r["b"]): r for r in result["tukey"]}
    assert set(pairs) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert pairs[("a", "c")]["p"] < 0.001 < pairs[("a", "b")]["p"]
    assert pairs[("a", "c")]["low"] < pairs[("a", "c")]["mean_difference"] < \
        pairs[("a", "c")]["high"]
    a, b = RNG.normal(size=15), RNG.normal(size=15)
    d = a - b
    t = d.mean() / (d.std(ddof=1) / np.sqrt(15))
    got = M.paired_ttest(a, b)
    assert got["t"] == pytest.approx(t) and got["p"] == pytest.approx(2 * stats.t.sf(abs(t), 14))
    table = M.tukey_markdown(result)
    assert table.startswith("One-way ANOVA: F = ") and "| a | c |" in table
    assert M.mean_std([1.0, 3.0]) == "2.000 ± 1.000"


def test_roc_curve_by_hand():
    # scores 0.9 (pos), 0.8 (neg), 0.8 (pos), 0.3 (neg), 0.1 (pos): one point per distinct
    # score, ties taken together, from (0, 0) to (1, 1)
    fpr, tpr = M.roc_curve([1, 0, 1, 0, 1], [0.9, 0.8, 0.8, 0.3, 0.1])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1.0])
    # its trapezoidal area is the exact AUC
    area = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
    assert area == pytest.approx(M.roc_auc([1, 0, 1, 0, 1], [0.9, 0.8, 0.8, 0.3, 0.1]))
