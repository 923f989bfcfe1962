"""Training on several machines (``--strategy multi-worker``): roles, and one Keras fix.

``TF_CONFIG`` names the cluster and this process's task (docs/recipes.md, "Several
machines"). :func:`worker_role` reads it: the chief (the ``chief`` task, else worker 0, as in
tf.distribute) writes the checkpoints, TensorBoard logs, models and report; the other workers
train their share and write nothing that stays.

:func:`fix_keras_multi_worker_logs` works around Keras 3's reduction of the per-step logs
under MultiWorkerMirroredStrategy (keras-team/keras#20585): it averages them with
``strategy.reduce("MEAN", v, axis=0)``, which fails for the scalar loss and metrics every
step returns ("Invalid reduction dimension 0 for input with 0 dimensions"). Scalars are
averaged over the replicas instead; nothing else changes (gradients are all-reduced by the
optimizer, as before).
"""

from __future__ import annotations

import dataclasses
import json
import os

from cxrkit.errors import CxrkitError


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """This process's place in a multi-worker cluster (from ``TF_CONFIG``)."""

    index: int
    count: int
    chief: bool  # writes checkpoints, TensorBoard logs, models and the report


def worker_role(kind: str) -> WorkerRole | None:
    """The role under ``--strategy multi-worker`` (None for the other strategies)."""
    if kind != "multi-worker":
        return None
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        cluster, task = config.get("cluster", {}), config.get("task", {})
        kind_, index = task.get("type", "worker"), int(task.get("index", 0))
        count = sum(len(cluster.get(k, [])) for k in ("chief", "worker"))
    except (ValueError, TypeError, AttributeError) as err:
        raise CxrkitError(f"TF_CONFIG is not a valid cluster description: {err}") from None
    if count == 0:
        raise CxrkitError("--strategy multi-worker needs TF_CONFIG with a cluster of "
                          "workers (docs/recipes.md, 'Several machines')")
    chief = kind_ == "chief" or (kind_ == "worker" and index == 0 and not cluster.get("chief"))
    return WorkerRole(index, count, chief)


def fix_keras_multi_worker_logs() -> None:
    """See the module docstring; idempotent."""
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "cxrkit_fix", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction == "auto" and trainer._collective_all_reduce_multi_worker(strategy):
            from keras.src import tree

            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.cxrkit_fix = True
    trainer.reduce_per_replica = reduce_per_replica
