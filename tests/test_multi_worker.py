"""Two worker processes on localhost train one demo stage together (MultiWorkerMirroredStrategy
from a two-worker TF_CONFIG): both finish, only the chief writes, and the weights equal a
one-process training loop on the same global batches, written out here without tf.distribute.
"""

from __future__ import annotations

import json
import socket
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cxrkit_command, quiet_env, sets

SETTINGS = ["data.batch_size=6", "stages.unet_s.epochs=1", "training.run_eagerly=true",
            "training.checkpoint=true",
            "stages.unet_s.precise_bn_batches=2"]


def _ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _launch(records, tmp_path, settings, *, stderr) -> list[subprocess.Popen]:
    """Worker 0 and worker 1 of a two-worker localhost cluster, each running the demo's
    ``unet_s`` stage into ``tmp_path/worker<i>``."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _ports(2)]}
    processes = []
    for index in range(2):
        env = quiet_env()
        env["TF_CONFIG"] = json.dumps({"cluster": cluster,
                                       "task": {"type": "worker", "index": index}})
        command = cxrkit_command("recipe", "run", "mlmi2024-demo", "--data", str(records),
                                 "--out", str(tmp_path / f"worker{index}"), "--models",
                                 "unet_s", "--strategy", "multi-worker", *sets(settings))
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                          stderr=stderr, text=True))
    return processes


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """36 phantom images at 32 px: 24 to train, so each epoch is two full global batches of
    12 (6 a worker)."""
    from data_prep.egd_cxr.convert import convert_egd_cxr
    from data_prep.phantom.egd_cxr import generate_egd_cxr

    raw = tmp_path_factory.mktemp("mw_raw")
    generate_egd_cxr(raw, n=36, size=96, seed=0)
    out = tmp_path_factory.mktemp("mw_records")
    manifest = convert_egd_cxr(raw / "master_sheet.csv", raw / "eye_gaze.csv", raw, out,
                               target=(32, 32), canvas=(96, 96), sigma=3.0, test=8, val=4,
                               seed=0)
    assert manifest["counts"]["train"]["total"] == 24
    return out


def _reference_weights(records, tmp_path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One process, no strategy: the engine's parts and global batches; each global batch is
    cut into the two workers' halves, each half runs forward in training mode on its own
    (BatchNorm uses its half's statistics, as each worker does), the gradient of the mean of
    the two half losses goes to Adam; then the precise-BN pass of the stage. Returns the
    weights before and after."""
    from cxrkit.recipes import losses, resolve
    from cxrkit.recipes.engine import Run
    from cxrkit.recipes.precise_bn import recompute_batchnorm
    from cxrkit.recipes.tasks import stage_model

    # batches of 12: the global batch (the workers' batch_size 6 times two replicas)
    recipe = resolve("mlmi2024-demo", [*SETTINGS, "data.batch_size=12"], stages=["unet_s"])
    run = Run(recipe, records, tmp_path / "reference", echo=lambda *_: None)
    run.build_parts()
    stage = recipe.stages["unet_s"]
    model = losses.training_view(stage_model(stage, run.parts), stage)
    loss = losses.keras_losses(stage)["saliency"]
    optimizer = run.optimizer(stage)
    optimizer.build(model.trainable_variables)
    initial = [w.numpy() for w in run.parts["unet_s"].weights]
    run.seed_stage(stage)  # as the engine does before a stage: the same shuffled batches
    for images, targets in run.dataset("train", stage, training=True):
        with tf.GradientTape() as tape:
            halves = [loss(targets["saliency"][h], model(images[h], training=True)["saliency"])
                      for h in (slice(0, 6), slice(6, 12))]
            value = tf.add_n(halves) / 2.0
        optimizer.apply(tape.gradient(value, model.trainable_variables),
                        model.trainable_variables)
    recompute_batchnorm(model, run.dataset("train", stage, training=True).take(2))
    return initial, [w.numpy() for w in run.parts["unet_s"].weights]


def test_two_workers_train_one_stage_together(records, tmp_path):
    processes = _launch(records, tmp_path, SETTINGS, stderr=subprocess.STDOUT)
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
    assert "strategy: multi-worker (CollectiveAllReduceStrategy), 2 replica(s)" in outputs[0]
    assert "worker 1: training done; the chief evaluates, reports and exports" in outputs[1]

    chief, other = tmp_path / "worker0", tmp_path / "worker1"
    assert (chief / "stages" / "unet_s" / "done.json").is_file()
    assert (chief / "parts" / "unet_s.keras").is_file() and (chief / "report.md").is_file()
    assert list((chief / "tensorboard" / "unet_s").rglob("events.out.tfevents.*"))
    assert not other.exists()  # the other worker wrote neither checkpoints nor logs

    import cxrkit.models  # noqa: F401  (registers the layers for loading)

    trained = keras.saving.load_model(chief / "parts" / "unet_s.keras")
    initial, want = _reference_weights(records, tmp_path)
    assert len(trained.weights) == len(want)
    for variable, expected in zip(trained.weights, want, strict=True):
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-4, atol=2e-5,
                                   err_msg=variable.path)
    # two Adam steps of 1e-3 moved every kernel by ~2e-3: the match is not the initial state
    assert min(float(np.abs(a - b).max()) for a, b, v in zip(initial, want, trained.weights,
                                                              strict=True)
               if v.path.endswith("kernel")) > 1e-3


def test_a_worker_whose_peer_dies_says_so(records, tmp_path):
    """The chief is killed while the stage trains: the other worker ends with one Error line
    naming itself and the likely cause, not a gRPC traceback."""
    import time

    processes = _launch(records, tmp_path, [*SETTINGS, "stages.unet_s.epochs=200"],
                        stderr=subprocess.PIPE)
    for _ in range(600):  # poll until the chief is inside the stage (at most ~5 minutes)
        if (tmp_path / "worker0" / "stages" / "unet_s" / "backup").exists():
            break
        assert processes[0].poll() is None, processes[0].communicate()[1][-2000:]
        time.sleep(0.5)
    else:
        pytest.fail("the chief never started the stage")
    processes[0].kill()
    _, errors = processes[1].communicate(timeout=300)
    processes[0].communicate()
    assert processes[1].returncode == 1
    assert "Traceback" not in errors
    last = errors.strip().splitlines()[-1]
    assert last.startswith("Error: worker 1 of 2: training stopped: "), last
    assert "another worker stopped or cannot be reached" in last, last
