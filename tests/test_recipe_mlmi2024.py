"""The whole mlmi2024 recipe on a tiny phantom set: artifacts, TensorBoard, report, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

TINY = ["demo.images=36", "demo.size=96", "demo.target=[32, 32]", "demo.sigma=3.0",
        "demo.test=9", "demo.val=6", "data.batch_size=6", "stages.triplet.epochs=1",
        "stages.classifier.epochs=1", "stages.saliency.epochs=3", "stages.fusion.epochs=8",
        "stages.unet_s.epochs=1"]


def _command(out: Path, *extra: str) -> list[str]:
    sets = [arg for item in TINY for arg in ("--set", item)]
    return [sys.executable, "-c", "from cxrkit.cli import main; main()", "recipe", "run",
            "mlmi2024", "--out", str(out), *sets, *extra]


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "mlmi2024"
    result = subprocess.run(_command(out), capture_output=True, text=True, env=_env(),
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result.stdout


def _tags(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in folder.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["tensors"])
    return tags


def test_demo_run_says_it_is_synthetic_first_and_last(finished):
    _, stdout = finished
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert "SYNTHETIC phantom data" in lines[0] and "SYNTHETIC phantom data" in lines[-1]
    assert any(line.startswith("TensorBoard: tensorboard --logdir ") for line in lines[:8])


def test_run_leaves_models_parts_trace_and_tensorboard(finished):
    out, _ = finished
    for part in ("densenet", "densenet_head", "unet", "fusion", "unet_s"):
        assert (out / "parts" / f"{part}.keras").is_file()
    for stage in ("triplet", "classifier", "saliency", "fusion", "unet_s"):
        done = json.loads((out / "stages" / stage / "done.json").read_text())
        assert done["epochs_run"] >= 1 and done["parts"]
        train_tags = _tags(out / "tensorboard" / stage / "train")
        assert {"epoch_loss", "epoch_learning_rate"} <= train_tags
        assert "epoch_loss" in _tags(out / "tensorboard" / stage / "validation")
        assert "_hparams_/session_start_info" in _tags(out / "tensorboard" / stage)
    assert "epoch_accuracy" in _tags(out / "tensorboard" / "fusion" / "train")
    assert {"images/saliency", "images/gaze_truth"} <= _tags(
        out / "tensorboard" / "saliency" / "images")
    trace = json.loads((out / "run.json").read_text())
    assert trace["recipe"]["name"] == "mlmi2024-demo"
    assert trace["recipe"]["stages"]["saliency"]["epochs"] == 3  # the --set is recorded
    assert {"tensorflow", "keras", "keras_hub", "cxrkit"} <= set(trace["versions"])
    import hashlib

    manifest = out / "data" / "records" / "manifest.json"
    assert trace["data_manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()


def test_report_tables_come_from_the_trained_model(finished):
    import keras

    from cxrkit import metrics
    from cxrkit.recipes.evaluate import test_arrays

    out, _ = finished
    document = json.loads((out / "metrics.json").read_text())
    fusion = document["stages"]["fusion"]["classification"]
    assert fusion["auc"] > 0.5  # stage 3 beats chance on the phantom test split
    test = test_arrays(out / "data" / "records")
    model = keras.saving.load_model(out / "model.keras")
    outputs = model.predict(test["image"], verbose=0)
    logits = outputs["logits"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert fusion["auc"] == pytest.approx(metrics.macro_auc(test["label"], probs), abs=1e-6)
    assert fusion["accuracy"] == pytest.approx(float((probs.argmax(1) == test["label"]).mean()))
    kl = [metrics.kl_divergence(outputs["saliency"][i, ..., 0], test["heatmap"][i, ..., 0])
          for i in range(len(logits))]
    saliency = document["stages"]["saliency"]["saliency"]
    assert saliency["kl"]["mean"] == pytest.approx(np.mean(kl), rel=1e-4)
    p = document["paired_ttests_vs_reference"]["tests"]["unet_s"]["kl"]["p"]
    assert 0.0 <= p <= 1.0
    report = (out / "report.md").read_text()
    assert "## Table 4.1" in report and "## Table 4.2" in report
    assert f"{fusion['auc']:.4f}" in report and "| UNet |" in report
    for figure in ("fig_4_2_examples.png", "roc_curves.png"):
        image = cv2.imread(str(out / "figures" / figure))
        assert image is not None and image.std() > 10
    assert (out / "saved_models" / "mlmi2024" / "1" / "saved_model.pb").is_file()
    card = json.loads((out / "model.card.json").read_text())
    assert card["class_names"] == ["Normal", "CHF", "pneumonia"] and card["task"] == "mlmi2024"


def test_killed_run_resumes_in_the_interrupted_stage(finished, tmp_path):
    out = tmp_path / "mlmi2024"
    process = subprocess.Popen(_command(out), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=_env())
    metadata = out / "stages" / "saliency" / "backup" / "training_metadata.json"
    for _ in range(3000):  # poll for up to ten minutes
        if metadata.is_file() or process.poll() is not None:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert metadata.is_file(), "the run never reached stage 2"
    assert not (out / "stages" / "saliency" / "done.json").exists()

    resumed = subprocess.run(_command(out, "--resume"), capture_output=True, text=True,
                             env=_env(), timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "stage triplet: done (artifacts verified), skipped" in resumed.stdout
    assert "stage classifier: done (artifacts verified), skipped" in resumed.stdout
    assert "stage saliency: resuming from its checkpoint after epoch" in resumed.stdout
    again = json.loads((out / "metrics.json").read_text())["stages"]
    first = json.loads((finished[0] / "metrics.json").read_text())["stages"]
    # same seed, same data: the stage-1 parts are identical, the rest match within noise
    assert again["classifier"]["classification"] == first["classifier"]["classification"]
    assert again["saliency"]["saliency"]["kl"]["mean"] == pytest.approx(
        first["saliency"]["saliency"]["kl"]["mean"], abs=0.05)
    assert again["fusion"]["classification"]["auc"] == pytest.approx(
        first["fusion"]["classification"]["auc"], abs=0.2)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(("strategy", "replicas"), [("mirrored", 2), ("multi-worker", 1)])
def test_distribution_strategies(strategy, replicas, tmp_path):
    """One small stage under MirroredStrategy on the CPU split into two logical devices, and
    under MultiWorkerMirroredStrategy with a single-worker TF_CONFIG."""
    only_unet = [f"stages.{s}.enabled=false" for s in ("triplet", "classifier", "saliency",
                                                       "fusion")]
    extra = ["--cpu-devices", "2"] if strategy == "mirrored" else []
    command = _command(tmp_path / "run", "--strategy", strategy, *extra,
                       *[a for item in only_unet for a in ("--set", item)])
    env = _env()
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
