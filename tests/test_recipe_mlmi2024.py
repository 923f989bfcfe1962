"""The mlmi2024 recipe end to end on a tiny phantom set: artifacts, TensorBoard, report, resume,
distribution strategies. The demo run itself is the session fixture ``mlmi2024_run``."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import cxrkit_command, quiet_env, sets
from scipy import stats


def _tags(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in folder.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["tensors"])
    return tags


def _kl(pred: np.ndarray, gaze: np.ndarray) -> np.ndarray:
    """KL(gaze || prediction) per image, each map divided by its sum, eps 1e-7 (numpy)."""
    p = pred.reshape(len(pred), -1).astype(np.float64)
    q = gaze.reshape(len(gaze), -1).astype(np.float64)
    p, q = p / p.sum(1, keepdims=True), q / q.sum(1, keepdims=True)
    return (q * (np.log(q + 1e-7) - np.log(p + 1e-7))).sum(1)


def test_demo_run_says_it_is_synthetic_first_and_last(mlmi2024_run):
    _, stdout = mlmi2024_run
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert "SYNTHETIC phantom data" in lines[0] and "SYNTHETIC phantom data" in lines[-1]
    assert any(line.startswith("TensorBoard: tensorboard --logdir ") for line in lines[:8])
    assert any(line.startswith("SavedModel for TensorFlow Serving: ") for line in lines)


def test_run_leaves_models_parts_trace_and_tensorboard(mlmi2024_run):
    out, _ = mlmi2024_run
    for part in ("densenet", "densenet_head", "unet", "fusion", "unet_s"):
        assert (out / "parts" / f"{part}.keras").is_file()
    for stage in ("triplet", "classifier", "saliency", "fusion", "unet_s"):
        done = json.loads((out / "stages" / stage / "done.json").read_text())
        assert done["epochs_run"] >= 1 and done["parts"]
        for part, digest in done["parts"].items():
            saved = out / "stages" / stage / "parts" / f"{part}.keras"
            assert hashlib.sha256(saved.read_bytes()).hexdigest() == digest
        train_tags = _tags(out / "tensorboard" / stage / "train")
        assert {"epoch_loss", "epoch_learning_rate"} <= train_tags
        assert "epoch_loss" in _tags(out / "tensorboard" / stage / "validation")
        assert "_hparams_/session_start_info" in _tags(out / "tensorboard" / stage)
    assert "epoch_accuracy" in _tags(out / "tensorboard" / "fusion" / "train")
    assert {"images/saliency", "images/gaze_truth"} <= _tags(
        out / "tensorboard" / "saliency" / "images")
    trace = json.loads((out / "run.json").read_text())
    assert trace["recipe"]["name"] == "mlmi2024-demo"
    assert trace["recipe"]["stages"]["saliency"]["epochs"] == 2  # the --set is recorded
    assert trace["recipe"]["stages"]["triplet"]["batch_size"] == 6  # resolved from [data]
    assert {"tensorflow", "keras", "keras_hub", "cxrkit"} <= set(trace["versions"])
    manifest = out / "data" / "records" / "manifest.json"
    assert trace["data_manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()


def test_report_tables_come_from_the_trained_models(mlmi2024_run):
    """Table 4.1 and 4.2 numbers and the paired t-test, recomputed here from the saved models
    with numpy and scipy."""
    import keras

    import cxrkit.models  # noqa: F401  (registers the layers for loading)
    from cxrkit.recipes.evaluate import load_test_split

    out, _ = mlmi2024_run
    document = json.loads((out / "metrics.json").read_text())
    fusion = document["stages"]["fusion"]["classification"]
    test = load_test_split(out / "data" / "records")
    model = keras.saving.load_model(out / "model.keras")
    outputs = model.predict(test["image"], verbose=0)
    logits = outputs["logits"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = test["label"]
    for c, name in enumerate(("Normal", "CHF", "pneumonia")):
        positive, negative = probs[labels == c, c], probs[labels != c, c]
        wins = (positive[:, None] > negative[None]).mean() + \
            0.5 * (positive[:, None] == negative[None]).mean()
        assert fusion["auc_per_class"][name] == pytest.approx(wins, abs=1e-6)
    assert fusion["accuracy"] == pytest.approx(float((probs.argmax(1) == labels).mean()))
    ours = _kl(outputs["saliency"], test["heatmap"])
    unet_s = keras.saving.load_model(out / "parts" / "unet_s.keras")
    baseline = _kl(unet_s.predict(test["image"], verbose=0)["saliency"], test["heatmap"])
    saliency = document["stages"]["saliency"]["saliency"]
    assert saliency["kl"]["mean"] == pytest.approx(ours.mean(), rel=1e-4)
    assert document["stages"]["unet_s"]["saliency"]["kl"]["mean"] == pytest.approx(
        baseline.mean(), rel=1e-4)
    p = document["paired_ttests_vs_reference"]["tests"]["unet_s"]["kl"]["p"]
    assert p == pytest.approx(stats.ttest_rel(ours, baseline).pvalue, rel=1e-3)
    report = (out / "report.md").read_text()
    assert "## Table 4.1" in report and "## Table 4.2" in report
    assert f"{fusion['auc']:.4f}" in report and "| UNet |" in report
    for figure in ("fig_4_2_examples.png", "roc_curves.png"):
        assert cv2.imread(str(out / "figures" / figure)) is not None
    assert (out / "saved_models" / "mlmi2024" / "1" / "saved_model.pb").is_file()
    card = json.loads((out / "model.card.json").read_text())
    assert card == {"preprocessing": {"name": "egd-cxr", "size": [32, 32]},
                    "class_names": ["Normal", "CHF", "pneumonia"], "task": "mlmi2024"}


def test_killed_run_resumes_in_the_interrupted_stage(mlmi2024_run, tmp_path):
    """Two small stages on the demo's records: killed in the second, resumed with --resume.
    The finished stage is skipped untouched; the second continues from its last epoch."""
    records = mlmi2024_run[0] / "data" / "records"
    out = tmp_path / "run"
    command = cxrkit_command(
        "recipe", "run", "mlmi2024-demo", "--data", str(records), "--out", str(out),
        "--models", "unet_s,res_se_unet",
        *sets(["data.batch_size=6", "stages.unet_s.epochs=1", "stages.res_se_unet.epochs=8",
               "training.early_stopping_patience=0", "training.reduce_lr_patience=0",
               "training.run_eagerly=true"]))
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=quiet_env())
    metadata = out / "stages" / "res_se_unet" / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 600
    while not metadata.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert metadata.is_file(), "the run never reached its second stage"
    assert not (out / "stages" / "res_se_unet" / "done.json").exists()
    finished = out / "stages" / "unet_s" / "parts" / "unet_s.keras"
    before = finished.read_bytes()

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True,
                             env=quiet_env(), timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "stage unet_s: done (artifacts verified), skipped" in resumed.stdout
    match = re.search(r"stage res_se_unet: resuming from its checkpoint after epoch (\d+)",
                      resumed.stdout)
    assert match, resumed.stdout[-2000:]
    after_epoch = int(match.group(1))
    assert 1 <= after_epoch < 8
    assert finished.read_bytes() == before
    done = json.loads((out / "stages" / "res_se_unet" / "done.json").read_text())
    assert done["epochs_run"] == 8 - after_epoch  # only the remaining epochs ran
    trace = json.loads((out / "run.json").read_text())
    assert trace["resumed"][0]["stages"] == ["unet_s", "res_se_unet"]
    document = json.loads((out / "metrics.json").read_text())
    assert set(document["stages"]) == {"unet_s", "res_se_unet"}


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(("strategy", "replicas"), [("mirrored", 2), ("multi-worker", 1)])
def test_distribution_strategies(strategy, replicas, mlmi2024_run, tmp_path):
    """One small stage under MirroredStrategy on the CPU split into two logical devices, and
    under MultiWorkerMirroredStrategy with a single-worker TF_CONFIG."""
    records = mlmi2024_run[0] / "data" / "records"
    extra = ["--cpu-devices", "2"] if strategy == "mirrored" else []
    command = cxrkit_command("recipe", "run", "mlmi2024-demo", "--data", str(records),
                             "--out", str(tmp_path / "run"), "--models", "unet_s",
                             "--strategy", strategy, *extra,
                             *sets(["data.batch_size=6", "stages.unet_s.epochs=1",
                                    "parts.densenet.blocks=[1, 1, 1, 1]"]))
    env = quiet_env()
    if strategy == "multi-worker":
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{_free_port()}"]},
                                       "task": {"type": "worker", "index": 0}})
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("strategy: "))
    assert line.startswith(f"strategy: {strategy} (") and f", {replicas} replica(s)" in line
    done = json.loads((tmp_path / "run" / "stages" / "unet_s" / "done.json").read_text())
    assert np.isfinite(done["history"]["loss"]).all()
    document = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert document["stages"]["unet_s"]["saliency"]["kl"]["mean"] > 0
