"""Losses of the MLMI 2024 study, in ``keras.ops`` (any backend).

- :class:`TripletLoss` — stage 1: Euclidean distances, margin 1.0,
  ``max(d(a, p) - d(a, n) + margin, 0)`` over every valid triplet of the batch (a != p with the
  anchor's label, n with another label), summed (``reduction="sum"``, the authors' code) or
  averaged. Embeddings are vectors (B, D), or feature maps (B, H, W, C) as the authors' code
  feeds PyTorch's ``TripletMarginLoss`` the unpooled dense-block-4 map: there a distance is
  taken along the width for every (row, channel), the hinge is applied to each and averaged
  over rows and channels, giving one loss per triplet. ``strategy="hard"`` (vectors only) takes,
  per anchor, the farthest positive and the nearest negative (Hermans et al. 2017) and
  averages over anchors that have both.
- :func:`saliency_kl` / :class:`SaliencyKL` — stage 2: the gaze map ``Q`` and the prediction
  ``P`` are each divided by their sum, then ``KL = sum Q (log(Q + eps) - log(P + eps))`` with
  eps = 1e-7 (gaze as the reference distribution; pixels with Q = 0 add nothing), averaged over
  the batch. The same convention as :func:`cxrkit.metrics.kl_divergence`.
"""

from __future__ import annotations

import keras
from keras import ops

EPSILON = 1e-7


def pairwise_distances(embeddings):
    """(B, D) embeddings to the (B, B) Euclidean distance matrix (gradient-safe at 0)."""
    sq = ops.sum(ops.square(embeddings), axis=-1)
    d2 = sq[:, None] - 2.0 * ops.matmul(embeddings, ops.transpose(embeddings)) + sq[None, :]
    d2 = ops.maximum(d2, 0.0)
    zero = ops.cast(ops.equal(d2, 0.0), d2.dtype)
    return ops.sqrt(d2 + zero * 1e-16) * (1.0 - zero)


def row_distances(maps):
    """(B, H, W, C) maps to (B, B, H, C): the Euclidean distance between images i and j along
    the width, for every row and channel (gradient-safe at 0)."""
    maps = ops.cast(maps, "float32")
    sq = ops.sum(ops.square(maps), axis=2)  # (B, H, C)
    gram = ops.einsum("ihwc,jhwc->ijhc", maps, maps)
    d2 = ops.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
    zero = ops.cast(ops.equal(d2, 0.0), d2.dtype)
    return ops.sqrt(d2 + zero * 1e-16) * (1.0 - zero)


@keras.saving.register_keras_serializable(package="cxrkit")
class TripletLoss(keras.losses.Loss):
    """Triplet margin loss over a batch: ``y_true`` labels (B,), ``y_pred`` embeddings (B, D)
    or feature maps (B, H, W, C) (see the module docstring)."""

    def __init__(self, margin: float = 1.0, strategy: str = "all", reduction_over: str = "sum",
                 name: str = "triplet", **kwargs):
        if strategy not in ("all", "hard"):
            raise ValueError(f"strategy must be 'all' or 'hard', not {strategy!r}")
        if reduction_over not in ("sum", "mean"):
            raise ValueError(f"reduction_over must be 'sum' or 'mean', not {reduction_over!r}")
        super().__init__(name=name, **kwargs)
        self.margin, self.strategy, self.reduction_over = margin, strategy, reduction_over

    def _reduce(self, losses, count):
        total = ops.sum(losses)
        return total if self.reduction_over == "sum" else total / ops.maximum(count, 1.0)

    def call(self, y_true, y_pred):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        y_pred = ops.cast(y_pred, "float32")
        same = ops.equal(labels[:, None], labels[None, :])
        eye = ops.eye(ops.shape(labels)[0], dtype="bool")
        positive = ops.cast(ops.logical_and(same, ops.logical_not(eye)), "float32")
        negative = ops.cast(ops.logical_not(same), "float32")
        mask = positive[:, :, None] * negative[:, None, :]  # valid (a, p, n)
        if len(y_pred.shape) == 4:
            if self.strategy == "hard":
                raise ValueError("strategy 'hard' needs vector embeddings, not feature maps")
            d = row_distances(y_pred)  # (B, B, H, C)

            def per_anchor(a):  # (B, B): mean over rows and channels of each (p, n) hinge
                hinge = ops.relu(d[a][:, None] - d[a][None, :] + self.margin)
                return ops.mean(hinge, axis=(2, 3))

            losses = ops.map(per_anchor, ops.arange(ops.shape(labels)[0])) * mask
            return self._reduce(losses, ops.sum(mask))
        d = pairwise_distances(y_pred)
        if self.strategy == "hard":
            hardest_pos = ops.max(d * positive, axis=1)
            big = ops.max(d) + 1.0
            hardest_neg = ops.min(d + big * (1.0 - negative), axis=1)
            valid = ops.max(positive, axis=1) * ops.max(negative, axis=1)
            return self._reduce(ops.relu(hardest_pos - hardest_neg + self.margin) * valid,
                                ops.sum(valid))
        losses = ops.relu(d[:, :, None] - d[:, None, :] + self.margin) * mask
        return self._reduce(losses, ops.sum(mask))

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "strategy": self.strategy,
                "reduction_over": self.reduction_over}


def saliency_kl(gaze, prediction):
    """Per-image KL(gaze || prediction) of two (B, H, W[, 1]) maps (see the module docstring)."""
    gaze = ops.cast(gaze, "float32")
    prediction = ops.cast(prediction, "float32")
    batch = ops.shape(gaze)[0]
    q = ops.reshape(gaze, (batch, -1))
    p = ops.reshape(prediction, (batch, -1))
    q = q / ops.maximum(ops.sum(q, axis=1, keepdims=True), EPSILON)
    p = p / ops.maximum(ops.sum(p, axis=1, keepdims=True), EPSILON)
    return ops.sum(q * (ops.log(q + EPSILON) - ops.log(p + EPSILON)), axis=1)


@keras.saving.register_keras_serializable(package="cxrkit")
class SaliencyKL(keras.losses.Loss):
    """:func:`saliency_kl` as a Keras loss (batch mean): ``y_true`` gaze, ``y_pred`` saliency."""

    def __init__(self, name: str = "saliency_kl", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return saliency_kl(y_true, y_pred)
