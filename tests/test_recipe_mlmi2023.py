"""The mlmi2023 recipe on a tiny phantom SIIM-ACR set: tables, figures, statistics, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

TINY = ["demo.images=100", "demo.size=256", "demo.target=128", "stages.resnet18.epochs=6",
        "stages.resnet34.epochs=6", "stages.vit_small.epochs=1"]


def _run(out, models, *extra):
    sets = [arg for item in TINY for arg in ("--set", item)]
    command = [sys.executable, "-c", "from cxrkit.cli import main; main()", "recipe", "run",
               "mlmi2023", "--out", str(out), "--models", models, *sets, *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mlmi2023") / "run"
    first = _run(out, "resnet18,resnet34")
    resumed = _run(out, "resnet18,resnet34,vit_small", "--resume")
    return out, first, resumed


def test_finished_models_are_not_retrained_on_resume(run):
    out, first, resumed = run
    assert "SYNTHETIC phantom data" in first.splitlines()[0]
    assert "stage resnet18: done (artifacts verified), skipped" in resumed
    assert "stage resnet34: done (artifacts verified), skipped" in resumed
    assert "== stage 3/3: vit_small" in resumed and "vit_small: done" not in resumed
    trace = json.loads((out / "run.json").read_text())
    assert trace["resumed"][0]["stages"] == ["resnet18", "resnet34", "vit_small"]
    for model in ("resnet18", "resnet34", "vit_small"):
        assert (out / "parts" / f"{model}.keras").is_file()
        assert (out / "tensorboard" / model / "train").is_dir()


def test_tables_and_statistics_come_from_the_models(run):
    import keras

    from cxrkit import metrics
    from cxrkit.explain import grad_cam
    from cxrkit.recipes.evaluate import test_arrays

    out, _, _ = run
    document = json.loads((out / "metrics.json").read_text())
    assert set(document["table_3_1"]) == {"ResNet18", "ResNet34", "ViT-small"}
    test = test_arrays(out / "data" / "records")
    model = keras.saving.load_model(out / "parts" / "resnet18.keras")
    logits = np.asarray(model.predict(test["image"], verbose=0))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    row = document["table_3_1"]["ResNet18"]
    assert row["auc"] == pytest.approx(metrics.roc_auc(test["label"], probs[:, 1]), abs=1e-6)
    assert row["accuracy"] == pytest.approx(float((probs.argmax(1) == test["label"]).mean()))
    masks = test["mask"][..., 0] > 0.5
    positive = np.flatnonzero((test["label"] == 1) & masks.any(axis=(1, 2)))
    maps = grad_cam(model, test["image"][positive], class_index=1)
    diff = metrics.diff_gradcam(maps, masks[positive])
    table = document["table_3_2_diff_gradcam"]["ResNet18"]
    assert table["n"] == len(positive) and table["mean"] == pytest.approx(np.mean(diff),
                                                                           abs=1e-5)
    assert table["min"] == pytest.approx(np.min(diff), abs=1e-5)
    assert document["fig_3_2_ehr_auc"]["ResNet18"]["mean"] == pytest.approx(
        np.mean(metrics.ehr_auc(maps, masks[positive])), abs=1e-5)
    for cnn in ("ResNet18", "ResNet34"):  # on the phantom, CNN Grad-CAM favours the finding
        assert document["table_3_2_diff_gradcam"][cnn]["mean"] > 0, cnn
    stats = document["anova_tukey_diff_gradcam"]
    assert 0 <= stats["p"] <= 1 and len(stats["tukey"]) == 3
    report = (out / "report.md").read_text()
    for heading in ("## Table 3.1", "## Table 3.2", "## EHR AUC (Fig. 3.2)",
                    "One-way ANOVA: F = ", "| model A | model B |"):
        assert heading in report
    assert f"{row['auc']:.4f}" in report
    for figure in ("fig_3_1_gradcam.png", "fig_3_2_ehr_auc.png"):
        image = cv2.imread(str(out / "figures" / figure))
        assert image is not None and image.std() > 10
