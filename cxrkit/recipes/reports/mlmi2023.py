"""The MLMI 2023 run report (layout ``mlmi2023``): Tables 3.1 and 3.2, EHR AUC (Fig. 3.2),
ANOVA + Tukey, Fig. 3.1.

- Table 3.1: accuracy, the positive class's (pneumothorax) precision and recall, and exact
  ROC AUC per model.
- Table 3.2: DiffGradCAM mean, std, min and max over the positive test images with a mask.
- EHR AUC per model (mean ± std over the same images) and its bar chart
  (``figures/fig_3_2_ehr_auc.png``).
- One-way ANOVA and Tukey HSD across models on the per-image DiffGradCAM values.
- ``figures/fig_3_1_gradcam.png``: rows = three positive test images with the mask outlined in
  white (the thesis' "three patient cases"), columns = the models' Grad-CAM overlays.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cxrkit import metrics
from cxrkit.explain import comparison_grid, save_png
from cxrkit.plots import bar_chart
from cxrkit.recipes.reports.common import trace_summary, write_markdown


def _stats(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": int(len(values)), "mean": float(values.mean()), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max())}


def write_report(out: Path, *, results: dict, test: dict, recipe, demo_note: str | None,
                 trace: dict, grid_rows: int = 3, **_) -> dict:
    """Writes metrics.json, report.md and figures/ for the Grad-CAM benchmark."""
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    runs = {r["label"]: r for r in results.values() if "diff_gradcam" in r}
    table_31 = {r["label"]: r["classification"] for r in results.values()
                if "classification" in r}
    table_32 = {label: _stats(r["diff_gradcam"]) for label, r in runs.items()}
    ehr = {label: _stats(r["ehr_auc"]) for label, r in runs.items()}
    groups = {label: r["diff_gradcam"] for label, r in runs.items() if len(r["diff_gradcam"]) > 1}
    statistics = metrics.anova_tukey(groups) if len(groups) >= 2 else None

    if ehr:
        save_png(figures / "fig_3_2_ehr_auc.png", bar_chart(
            {k: v["mean"] or 0.0 for k, v in ehr.items()},
            errors={k: v["std"] or 0.0 for k, v in ehr.items()},
            title="EHR AUC of Grad-CAM (positive test images)", ylabel="EHR AUC"))
    shared = set.intersection(*(set(r["gradcam_images"].tolist()) for r in runs.values())) \
        if runs else set()
    chosen = sorted(shared)[:grid_rows]
    if chosen:
        heatmaps = {label: r["gradcam_maps"][[list(r["gradcam_images"]).index(i)
                                              for i in chosen]] for label, r in runs.items()}
        save_png(figures / "fig_3_1_gradcam.png", comparison_grid(
            test["image"][chosen], heatmaps, masks=test["mask"][chosen, ..., 0]))

    document = {"recipe": recipe.name, "demo": demo_note is not None,
                "test_images": int(len(test["label"])),
                "positive_test_images_with_mask": int(max((s["n"] for s in table_32.values()),
                                                          default=0)),
                "table_3_1": table_31, "table_3_2_diff_gradcam": table_32,
                "fig_3_2_ehr_auc": ehr, "anova_tukey_diff_gradcam": statistics,
                "trace": trace_summary(trace)}
    (out / "metrics.json").write_text(json.dumps(document, indent=2) + "\n")

    body = [f"Test images: {len(test['label'])}; Grad-CAM scored on "
              f"{document['positive_test_images_with_mask']} positive images with a mask.", "",
              "## Table 3.1 — classification (test split)", "",
              "Precision and recall of the positive class (pneumothorax).", "",
              metrics.markdown_table(["Model", "Accuracy", "Precision", "Recall", "AUC"], [
                  [k, v["accuracy"], v["precision"], v["recall"], v["auc"]]
                  for k, v in table_31.items()]), "",
              "## Table 3.2 — DiffGradCAM (mean heat inside − outside the mask)", "",
              metrics.markdown_table(["Model", "Mean", "Std", "Min", "Max"], [
                  [k, v["mean"], v["std"], v["min"], v["max"]] for k, v in table_32.items()
                  if v["n"]]), "",
              "## EHR AUC (Fig. 3.2)", "",
              metrics.markdown_table(["Model", "EHR AUC (mean)", "Std"], [
                  [k, v["mean"], v["std"]] for k, v in ehr.items() if v["n"]]), "",
              "## One-way ANOVA and Tukey HSD on DiffGradCAM", "",
              metrics.tukey_markdown(statistics) if statistics else
              "(needs at least two models with two or more scored images)", "",
              "## Figures", "", "- `figures/fig_3_1_gradcam.png` — Grad-CAM per model, mask "
              "outlined in white (three cases, as the thesis' figure)",
              "- `figures/fig_3_2_ehr_auc.png` — EHR AUC per model", ""]
    write_markdown(out, f"{recipe.name} — Grad-CAM reliability benchmark", body,
                   demo_note=demo_note, trace=trace)
    return document
