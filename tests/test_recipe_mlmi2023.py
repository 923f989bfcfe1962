"""The mlmi2023 recipe on a tiny phantom SIIM-ACR set: tables, figures, statistics, resume."""

from __future__ import annotations

import json
import subprocess

import cv2
import numpy as np
import pytest
from conftest import cxrkit_command, quiet_env, sets

# 60 phantom images at 64 px, two epochs, run eagerly (cheaper than tracing for a few steps),
# in one process: a second one costs more than these two tiny stages (the side process is run
# end to end by the mlmi2024 fixture and the killed-run test)
TINY = ["demo.images=60", "demo.size=128", "demo.target=64", "stages.resnet18.epochs=2",
        "stages.vit_small.epochs=1", "stages.vit_small.batch_size=12", "data.batch_size=12",
        "training.run_eagerly=true", "training.side_process=false"]


def _run(out, models, *extra):
    result = subprocess.run(cxrkit_command("recipe", "run", "mlmi2023", "--out", str(out),
                                           "--models", models, *sets(TINY), *extra),
                            capture_output=True, text=True, timeout=900, env=quiet_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mlmi2023") / "run"
    first = _run(out, "resnet18")
    resumed = _run(out, "resnet18,vit_small", "--resume")
    return out, first, resumed


def test_finished_models_are_not_retrained_on_resume(run):
    out, first, resumed = run
    assert "SYNTHETIC phantom data" in first.splitlines()[0]
    assert "stage resnet18: done (artifacts verified), skipped" in resumed
    assert "== stage 2/2: vit_small" in resumed and "vit_small: done" not in resumed
    assert "demo data: reusing" in resumed
    trace = json.loads((out / "run.json").read_text())
    assert trace["resumed"][0]["stages"] == ["resnet18", "vit_small"]
    for model in ("resnet18", "vit_small"):
        assert (out / "parts" / f"{model}.keras").is_file()
        assert (out / "tensorboard" / model / "train").is_dir()


def _f_statistic(groups: list[np.ndarray]) -> float:
    """One-way ANOVA F from its definition: between-group over within-group mean square."""
    values = np.concatenate(groups)
    between = sum(len(g) * (g.mean() - values.mean()) ** 2 for g in groups) / (len(groups) - 1)
    within = sum(((g - g.mean()) ** 2).sum() for g in groups) / (len(values) - len(groups))
    return between / within


def test_tables_and_statistics_come_from_the_models(run):
    """Every number of the report, recomputed from the saved models (metrics by hand; the
    Grad-CAM maps from :func:`grad_cam`, which its own tests pin)."""
    import keras

    import cxrkit.models  # noqa: F401  (registers the layers for loading)
    from cxrkit.explain import grad_cam
    from cxrkit.recipes.evaluate import load_test_split

    out, _, _ = run
    document = json.loads((out / "metrics.json").read_text())
    assert set(document["table_3_1"]) == {"ResNet18", "ViT-small"}
    test = load_test_split(out / "data" / "records")
    labels = test["label"]
    masks = test["mask"][..., 0] > 0.5
    positive = np.flatnonzero((labels == 1) & masks.any(axis=(1, 2)))
    diffs = {}
    for name, label in (("resnet18", "ResNet18"), ("vit_small", "ViT-small")):
        model = keras.saving.load_model(out / "parts" / f"{name}.keras")
        logits = np.asarray(model.predict(test["image"], verbose=0))
        p1 = np.exp(logits[:, 1] - np.logaddexp(logits[:, 0], logits[:, 1]))
        row = document["table_3_1"][label]
        pos, neg = p1[labels == 1], p1[labels == 0]
        auc = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
        assert row["auc"] == pytest.approx(auc, abs=1e-6)
        assert row["accuracy"] == pytest.approx(float(((p1 > 0.5) == labels).mean()))
        hits = ((p1 > 0.5) & (labels == 1)).sum()  # precision/recall of pneumothorax
        assert row["recall"] == pytest.approx(hits / (labels == 1).sum())
        assert row["precision"] == pytest.approx(hits / max((p1 > 0.5).sum(), 1))
        maps = grad_cam(model, test["image"][positive], class_index=1)
        inside = masks[positive]
        flat = maps.reshape(len(maps), -1).max(axis=1) <= 0  # degenerate: zero everywhere
        maps, inside = maps[~flat], inside[~flat]
        diff = np.array([m[k].mean() - m[~k].mean() for m, k in zip(maps, inside,
                                                                     strict=True)])
        table = document["table_3_2_diff_gradcam"][label]
        assert (table["n"], table["degenerate"]) == ((~flat).sum(), flat.sum())
        if not len(diff):
            assert table["mean"] is None
            continue
        assert [table["mean"], table["std"], table["min"], table["max"]] == pytest.approx(
            [diff.mean(), diff.std(), diff.min(), diff.max()], abs=1e-5)
        diffs[label] = diff
        t = np.arange(100) / 100
        ehr = []
        for m, k in zip(maps, inside, strict=True):
            passing = m[None] >= t[:, None, None]
            counts = passing.sum(axis=(1, 2))
            ratio = np.where(counts > 0, (passing & k).sum(axis=(1, 2)) / np.maximum(counts, 1),
                             0.0)
            ehr.append(((ratio[1:] + ratio[:-1]) / 2 * np.diff(t)).sum())
        assert document["fig_3_2_ehr_auc"][label]["mean"] == pytest.approx(np.mean(ehr),
                                                                           abs=1e-6)
    report = (out / "report.md").read_text()
    for heading in ("## Table 3.1", "## Table 3.2", "## EHR AUC (Fig. 3.2)"):
        assert heading in report
    assert f"{document['table_3_1']['ResNet18']['auc']:.4f}" in report
    for figure in ("fig_3_1_gradcam.png", "fig_3_2_ehr_auc.png"):
        assert cv2.imread(str(out / "figures" / figure)) is not None
        assert f"](figures/{figure})" in report
    stats = document["anova_tukey_diff_gradcam"]
    diffs = {k: v for k, v in diffs.items() if len(v) > 1}  # fewer scored maps: no group
    if len(diffs) < 2:
        assert stats is None and "(needs at least two models" in report
        return
    assert "One-way ANOVA: F = " in report and "| model A | model B |" in report
    assert stats["f"] == pytest.approx(_f_statistic(list(diffs.values())), rel=1e-4)
    assert [(t["a"], t["b"]) for t in stats["tukey"]] == [("ResNet18", "ViT-small")]
    for pair in stats["tukey"]:
        assert pair["mean_difference"] == pytest.approx(
            diffs[pair["a"]].mean() - diffs[pair["b"]].mean(), abs=1e-6)


def test_report_html_in_a_real_browser(run, tmp_path):
    """report.html: every image decodes, no console error, one gallery card per scored
    positive test image with a tile per model."""
    from browser import inspect_page

    out, _, _ = run
    document = json.loads((out / "metrics.json").read_text())
    seen = inspect_page(out / "report.html", tmp_path)
    scored = document["positive_test_images_with_mask"]
    assert seen["undecoded"] == [] and seen["errors"] == [] and seen["console"] == []
    assert seen["cards"] == scored and seen["images"] == 2 + scored * 3  # figures + tiles
    assert seen["filters"]["pneumothorax"] == ["pneumothorax"] * scored
