"""Triplet and saliency-KL losses against brute-force numpy computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cxrkit.losses import SaliencyKL, TripletLoss, pairwise_distances


def _valid(labels):
    return [(a, p, n) for a, p, n in itertools.product(range(len(labels)), repeat=3)
            if a != p and labels[a] == labels[p] and labels[n] != labels[a]]


def _numpy_triplets(emb, labels, margin):
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    return float(np.mean([max(d[a, p] - d[a, n] + margin, 0.0)
                          for a, p, n in _valid(labels)]))


def _torch_triplet_margin_on_maps(maps, labels, margin):
    """The authors' code, transcribed: PyTorch's TripletMarginLoss(margin, p=2) on (1, C, H, W)
    maps takes the norm along the last axis (width) for every (channel, row), applies the
    hinge to each and averages; the loop sums over the batch's valid triplets. (Channels-last
    here: maps are (B, H, W, C).)"""
    total = 0.0
    for a, p, n in _valid(labels):
        d_ap = np.linalg.norm(maps[a] - maps[p], axis=1)  # (H, C): along W
        d_an = np.linalg.norm(maps[a] - maps[n], axis=1)
        total += np.maximum(d_ap - d_an + margin, 0.0).mean()
    return total


def _numpy_hard(emb, labels, margin):
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    values = []
    for a in range(len(labels)):
        pos = [d[a, p] for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        neg = [d[a, n] for n in range(len(labels)) if labels[n] != labels[a]]
        if pos and neg:
            values.append(max(max(pos) - min(neg) + margin, 0.0))
    return float(np.mean(values))


def test_distances_match_numpy():
    emb = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
    want = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    np.testing.assert_allclose(np.asarray(pairwise_distances(emb)), want, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_triplet_loss_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(9, 4)).astype("float32") * 0.5
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 0, 2])
    got = float(TripletLoss(margin=1.0, reduction_over="mean")(labels, emb))
    assert got == pytest.approx(_numpy_triplets(emb, labels, 1.0), rel=1e-5)
    summed = float(TripletLoss(margin=1.0)(labels, emb))  # the default: summed, as the code
    assert summed == pytest.approx(_numpy_triplets(emb, labels, 1.0) * len(_valid(labels)),
                                   rel=1e-5)
    hard = float(TripletLoss(margin=1.0, strategy="hard", reduction_over="mean")(labels, emb))
    assert hard == pytest.approx(_numpy_hard(emb, labels, 1.0), rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_triplet_loss_on_unpooled_maps_matches_the_authors_code(seed):
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(7, 3, 4, 5)).astype("float32") * 0.4  # (B, H, W, C)
    labels = np.array([0, 1, 0, 2, 1, 2, 0])
    got = float(TripletLoss(margin=1.0)(labels, maps))
    assert got == pytest.approx(_torch_triplet_margin_on_maps(maps, labels, 1.0), rel=1e-4)
    import tensorflow as tf

    traced = float(tf.function(TripletLoss(margin=1.0))(labels, maps))
    assert traced == pytest.approx(got, rel=1e-5)
    with pytest.raises(ValueError, match="needs vector embeddings"):
        TripletLoss(strategy="hard")(labels, maps)


def test_triplet_loss_hand_worked_case():
    # two classes on a line: a=0, p=0.5 (same class), n=2 -> d(a,p)=0.5, d(a,n)=2
    emb = np.array([[0.0], [0.5], [2.0]], dtype="float32")
    labels = np.array([0, 0, 1])
    # triplets: (0,1,2): 0.5-2+1=-0.5 -> 0 ; (1,0,2): 0.5-1.5+1=0 -> 0
    assert float(TripletLoss()(labels, emb)) == pytest.approx(0.0, abs=1e-6)
    assert float(TripletLoss(margin=2.0)(labels, emb)) == pytest.approx(0.5 + 1.0)
    assert float(TripletLoss(margin=2.0, reduction_over="mean")(labels, emb)) == \
        pytest.approx((0.5 + 1.0) / 2)


def test_saliency_kl_matches_numpy_and_is_zero_for_equal_maps():
    rng = np.random.default_rng(3)
    gaze = rng.random((3, 8, 8, 1)).astype("float32")
    gaze[0, :4] = 0.0  # zero gaze pixels contribute nothing
    pred = rng.random((3, 8, 8, 1)).astype("float32")
    q = gaze.reshape(3, -1) / gaze.reshape(3, -1).sum(1, keepdims=True)
    p = pred.reshape(3, -1) / pred.reshape(3, -1).sum(1, keepdims=True)
    want = (q * (np.log(q + 1e-7) - np.log(p + 1e-7))).sum(1).mean()
    assert float(SaliencyKL()(gaze, pred)) == pytest.approx(want, rel=1e-5)
    assert float(SaliencyKL()(gaze, gaze * 3.0)) == pytest.approx(0.0, abs=1e-5)
    # hand-worked: Q = (1/2, 1/2, 0, 0), P uniform -> KL = log 2
    q2 = np.array([[1.0, 1.0, 0.0, 0.0]], dtype="float32")
    assert float(SaliencyKL()(q2, np.ones_like(q2))) == pytest.approx(np.log(2.0), rel=1e-5)


@pytest.mark.parametrize("strategy", ["all", "hard"])
def test_losses_compute_the_same_inside_a_traced_graph(strategy):
    """What a compiled training step computes: the losses traced by ``tf.function``."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    emb = rng.normal(size=(8, 5)).astype("float32")
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    loss = TripletLoss(margin=1.0, strategy=strategy, reduction_over="mean")
    want = (_numpy_triplets if strategy == "all" else _numpy_hard)(emb, labels, 1.0)
    assert float(tf.function(loss)(labels, emb)) == pytest.approx(want, rel=1e-5)
    gaze = rng.random((2, 6, 6, 1)).astype("float32")
    pred = rng.random((2, 6, 6, 1)).astype("float32")
    pred /= pred.sum(axis=(1, 2, 3), keepdims=True)
    kl = SaliencyKL()
    assert float(tf.function(kl)(gaze, pred)) == pytest.approx(float(kl(gaze, pred)), rel=1e-6)
