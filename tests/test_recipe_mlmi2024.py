"""The mlmi2024 recipe end to end on a tiny phantom set: what the demo prints, artifacts,
TensorBoard, report. The demo run itself is the session fixture ``mlmi2024_run``."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
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
    _, stdout, stderr = mlmi2024_run
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert "SYNTHETIC phantom data" in lines[0] and "SYNTHETIC phantom data" in lines[-1]
    assert any(line.startswith("TensorBoard: tensorboard --logdir ") for line in lines[:8])
    assert any(line.startswith("SavedModel for TensorFlow Serving: ") for line in lines)


def test_demo_run_is_quiet(mlmi2024_run):
    """No Python warning, no TensorFlow log line (CUDA probe, oneDNN, retracing notices):
    their causes are fixed (cxrkit.cli.quiet says which are only hidden, and why)."""
    _, stdout, stderr = mlmi2024_run
    both = stdout + stderr
    for noise in ("Warning", "WARNING", "WARN", "I0000", "E0000", "W0000", "cuInit", "oneDNN",
                  "retracing", "ran out of data", "Gradients do not exist"):
        assert noise not in both, noise


def test_baselines_train_aside_and_print_in_order(mlmi2024_run):
    """The demo's independent stages (UNet, GazeGNN here) train and are evaluated in the side
    process; the console still shows every stage in the recipe's order, each with its own
    epochs."""
    out, stdout, _ = mlmi2024_run
    assert "stages unet_s, gazegnn: trained in a second process alongside this one" in stdout
    headers = [line for line in stdout.splitlines() if line.startswith("== stage ")]
    assert [h.split()[3] for h in headers] == ["triplet", "classifier", "saliency", "fusion",
                                              "unet_s", "gazegnn"]
    epoch = re.compile(r"^\d+/\d+ - .*loss", re.MULTILINE)  # Keras' line for an epoch
    for section in stdout.split("== stage ")[1:]:  # each stage's section holds its epoch
        assert epoch.search(section), section[:300]
    for stage in ("unet_s", "gazegnn"):
        console = (out / "stages" / stage / "console.txt").read_text()
        assert epoch.search(console) and console.strip() in stdout
        assert json.loads((out / "stages" / stage / "side.json").read_text()) == {
            "status": "done"}
        # evaluated there too: the report's numbers for it are the child's
        from cxrkit.recipes.evaluate import load_evaluation

        evaluation = load_evaluation(out / "stages" / stage / "evaluation.pkl")
        document = json.loads((out / "metrics.json").read_text())["stages"][stage]
        if stage == "gazegnn":
            for key in ("accuracy", "auc", "auc_macro"):
                assert document["classification"][key] == evaluation["classification"][key]
        else:
            for key in ("kl", "cc", "hs"):
                assert document["saliency"][key] == evaluation["saliency"][key]
    assert "Traceback" not in (out / "side" / "stderr.txt").read_text()
    assert not (out / "stages" / "triplet" / "console.txt").exists()  # trained here


def test_run_leaves_models_parts_trace_and_tensorboard(mlmi2024_run):
    out, _, _ = mlmi2024_run
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
    assert trace["recipe"]["stages"]["saliency"]["epochs"] == 1  # the --set is recorded
    assert trace["recipe"]["stages"]["triplet"]["batch_size"] == 6
    assert trace["recipe"]["stages"]["unet_s"]["batch_size"] == 6  # resolved from [data]
    assert {"tensorflow", "keras", "keras_hub", "cxrkit"} <= set(trace["versions"])
    manifest = out / "data" / "records" / "manifest.json"
    assert trace["data_manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()


def test_report_tables_come_from_the_trained_models(mlmi2024_run):
    """Table 4.1 and 4.2 numbers and the paired t-test, recomputed here from the saved models
    with numpy and scipy."""
    import keras
    import tensorflow as tf

    import cxrkit.models  # noqa: F401  (registers the layers for loading)
    from cxrkit.recipes.evaluate import load_test_split

    out, _, _ = mlmi2024_run
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
    one_hot = (labels[:, None] == np.arange(3)[None]).ravel()  # micro: all (image, class) pairs
    positive, negative = probs.ravel()[one_hot], probs.ravel()[~one_hot]
    micro = (positive[:, None] > negative[None]).mean() + \
        0.5 * (positive[:, None] == negative[None]).mean()
    assert fusion["auc"] == pytest.approx(micro, abs=1e-6) and fusion["auc_average"] == "micro"
    assert fusion["auc_macro"] == pytest.approx(np.mean(list(fusion["auc_per_class"].values())))
    # the side process exported the same model, from the part files, while this one reported
    served = tf.saved_model.load(str(out / "saved_models" / "mlmi2024" / "1"))
    answer = served.signatures["serving_default"](image=tf.constant(test["image"]))
    np.testing.assert_allclose(answer["probabilities"].numpy(), probs, atol=1e-5)
    np.testing.assert_allclose(answer["saliency"].numpy(), outputs["saliency"], atol=1e-5)
    gazegnn = keras.saving.load_model(out / "parts" / "gazegnn.keras")  # fed image + dwell map
    gaze_logits = gazegnn.predict({"image": test["image"], "gaze": test["gaze_dwell"]},
                                  verbose=0)
    assert document["stages"]["gazegnn"]["classification"]["accuracy"] == pytest.approx(
        float((gaze_logits.argmax(1) == labels).mean()))
    assert "| GazeGNN |" in (out / "report.md").read_text()
    from cxrkit.inference import load_model

    _, card = load_model(out / "parts" / "gazegnn.keras")  # its card: exportable as it is
    assert card.task == "gazegnn" and card.class_names == ("Normal", "CHF", "pneumonia")
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
    assert "AUC (micro) | AUC (macro)" in report
    for figure in ("fig_4_2_examples.png", "roc_curves.png"):
        assert cv2.imread(str(out / "figures" / figure)) is not None
        assert f"](figures/{figure})" in report
    assert (out / "saved_models" / "mlmi2024" / "1" / "saved_model.pb").is_file()
    card = json.loads((out / "model.card.json").read_text())
    assert card == {"preprocessing": {"name": "egd-cxr", "size": [32, 32], "placement": "centre",
                                      "canvas": [96, 96]},
                    "class_names": ["Normal", "CHF", "pneumonia"], "task": "mlmi2024"}


def test_fig_4_2_grad_cam_comes_from_the_stage_1b_classifier(mlmi2024_run):
    """Fig. 4.2's Grad-CAM column is the stage-1b DenseNet201 classifier's, on dense block 4,
    for the predicted class (the authors' cam_densenet.py): recomputed here from the saved
    parts with an eager GradientTape, against what the report's Grad-CAM function gives."""
    import keras
    import tensorflow as tf

    from cxrkit.models import encoder_model
    from cxrkit.recipes import resolve
    from cxrkit.recipes.evaluate import load_test_split
    from cxrkit.recipes.reports.mlmi2024 import gradcam_maps

    out, _, _ = mlmi2024_run
    document = json.loads((out / "metrics.json").read_text())
    figure = document["fig_4_2"]
    stages = json.loads((out / "run.json").read_text())["recipe"]["stages"]
    mt_unet = [stages["mt_unet"]["label"]] if stages["mt_unet"]["enabled"] else []
    assert figure["columns"] == ["image", "gaze (truth)", stages["saliency"]["label"],
                                 *mt_unet, "Grad-CAM"]
    assert "stage classifier" in document["gradcam_source"]
    assert "embedding_map" in document["gradcam_source"]
    if not mt_unet:
        assert "MT-UNet (stage mt_unet is disabled in this profile)" in (
            out / "report.md").read_text()
    test = load_test_split(out / "data" / "records")
    densenet = keras.saving.load_model(out / "parts" / "densenet.keras")
    head = keras.saving.load_model(out / "parts" / "densenet_head.keras")
    block4 = densenet(tf.constant(test["image"]), training=False)["block4"]
    # the head reads `features` = relu(bn(block4)): differentiate the predicted class's logit
    # with respect to block4 through that path
    taps = densenet.get_layer("densenet201")
    with tf.GradientTape() as tape:
        tape.watch(block4)
        logits = head(taps.get_layer("relu")(taps.get_layer("bn")(block4, training=False)),
                      training=False)
        chosen = tf.gather(logits, tf.argmax(logits, axis=1), batch_dims=1)
    grads = tape.gradient(chosen, block4).numpy()
    cam = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * block4.numpy()).sum(-1), 0)
    rows, cols = test["image"].shape[1:3]
    want = np.stack([cv2.resize(((m - m.min()) / (m.max() - m.min()) if m.max() > m.min()
                                 else np.zeros_like(m)).astype(np.float32), (cols, rows),
                                interpolation=cv2.INTER_LINEAR) for m in cam])
    recipe = resolve("mlmi2024", demo=True)
    got, _ = gradcam_maps(recipe, {"classifier": encoder_model(densenet, head)}, test)
    np.testing.assert_allclose(got, want, atol=1e-3)
    degenerate = int((want.reshape(len(want), -1).max(axis=1) <= 0).sum())
    for metric in ("kl", "cc", "hs"):  # a map that is zero everywhere is not scored
        assert document["gradcam_vs_gaze"][metric]["undefined"] >= degenerate


def test_report_html_in_a_real_browser(mlmi2024_run, tmp_path):
    """The demo's report.html: every image decodes, no console error, the gallery has every
    test image and its class filter shows exactly that class."""
    from browser import inspect_page

    out, _, _ = mlmi2024_run
    seen = inspect_page(out / "report.html", tmp_path)
    test_images = json.loads((out / "metrics.json").read_text())["test_images"]
    assert seen["undecoded"] == [] and seen["images"] > 2 * test_images, seen
    assert seen["errors"] == [] and seen["console"] == []
    assert seen["cards"] == test_images
    for name in ("Normal", "CHF", "pneumonia"):
        assert seen["filters"][name] and set(seen["filters"][name]) == {name}
    assert sum(len(seen["filters"][n]) for n in ("Normal", "CHF", "pneumonia")) == test_images
