"""The MLMI 2023 run report (layout ``mlmi2023``): Tables 3.1 and 3.2, EHR AUC (Fig. 3.2),
ANOVA + Tukey, Fig. 3.1.

- Table 3.1: accuracy, the positive class's (pneumothorax) precision and recall, and exact
  ROC AUC per model.
- Table 3.2: DiffGradCAM mean, std, min and max over the positive test images with a mask;
  a Grad-CAM map that is zero everywhere is counted as degenerate and left out of the
  statistics (it explains nothing; averaging it in as 0 would hide a failed model).
- EHR AUC per model (mean ± std over the same images) and its bar chart
  (``figures/fig_3_2_ehr_auc.png``).
- One-way ANOVA and Tukey HSD across models on the per-image DiffGradCAM values.
- ``figures/fig_3_1_gradcam.png``: rows = three positive test images with the mask outlined in
  white (the thesis' "three patient cases"), columns = the models' Grad-CAM overlays.
- ``report.html``: the same page with the figures inline and a gallery of every scored test
  case: image with its mask outline, each model's Grad-CAM, its DiffGradCAM and EHR AUC.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cxrkit import metrics
from cxrkit.explain.overlay import outline
from cxrkit.figures import Panel, bar_figure, panel_grid, save_figure
from cxrkit.recipes.reports.common import trace_summary, write_pages
from cxrkit.recipes.reports.html import Case, case_name, gallery_html, overlay_tile


def _stats(values: np.ndarray) -> dict:
    """Statistics over the defined values; ``degenerate`` counts the NaN ones."""
    defined = values[np.isfinite(values)]
    out = {"n": int(len(defined)), "degenerate": int(len(values) - len(defined))}
    if len(defined) == 0:
        return {**out, "mean": None, "std": None, "min": None, "max": None}
    return {**out, "mean": float(defined.mean()), "std": float(defined.std()),
            "min": float(defined.min()), "max": float(defined.max())}


def _gallery(runs: dict, test: dict) -> str:
    """One card per scored positive test image: the image with its mask outlined, each
    model's Grad-CAM with the outline, and each model's DiffGradCAM and EHR AUC."""
    index = sorted(set().union(*(r["gradcam_images"].tolist() for r in runs.values())))
    cases = []
    for i in index:
        mask = test["mask"][i, ..., 0]
        tiles = {"image + mask": outline(overlay_tile(test["image"][i], None), mask,
                                         color=(255, 255, 255))}
        numbers = {}
        for label, r in runs.items():
            where = list(r["gradcam_images"]).index(i) if i in r["gradcam_images"] else None
            if where is None:
                continue
            tiles[label] = outline(overlay_tile(test["image"][i], r["gradcam_maps"][where]),
                                   mask, color=(255, 255, 255))
            numbers[f"DiffGradCAM {label}"] = float(r["diff_gradcam"][where])
            numbers[f"EHR AUC {label}"] = float(r["ehr_auc"][where])
        cases.append(Case(case_name(test, i), "pneumothorax", None, tiles, numbers))
    return gallery_html(cases, ["pneumothorax"], note="The positive test images with a mask "
                        "(the images Grad-CAM is scored on); n/a marks a degenerate map.")


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
    scored = {label: r["diff_gradcam"][np.isfinite(r["diff_gradcam"])] for label, r in runs.items()}
    groups = {label: values for label, values in scored.items() if len(values) > 1}
    statistics = metrics.anova_tukey(groups) if len(groups) >= 2 else None

    if ehr:
        save_figure(bar_figure({k: v["mean"] or 0.0 for k, v in ehr.items()},
                               errors={k: v["std"] or 0.0 for k, v in ehr.items()},
                               title="EHR AUC of Grad-CAM (positive test images; mean ± std)",
                               ylabel="EHR AUC"), figures / "fig_3_2_ehr_auc.png")
    shared = set.intersection(*(set(r["gradcam_images"].tolist()) for r in runs.values())) \
        if runs else set()
    chosen = sorted(shared)[:grid_rows]
    if chosen:
        rows = [[Panel(test["image"][i], mask=test["mask"][i, ..., 0]),
                 *(Panel(test["image"][i], r["gradcam_maps"][list(r["gradcam_images"]).index(i)],
                         test["mask"][i, ..., 0]) for r in runs.values())] for i in chosen]
        save_figure(panel_grid(rows, column_titles=["image", *runs],
                               row_titles=[f"case {n + 1}" for n in range(len(chosen))],
                               title="Grad-CAM of the pneumothorax class; segmentation "
                                     "outlined in white"), figures / "fig_3_1_gradcam.png")

    document = {"recipe": recipe.name, "demo": demo_note is not None,
                "test_images": int(len(test["label"])),
                "positive_test_images_with_mask": int(max((s["n"] + s["degenerate"]
                                                           for s in table_32.values()),
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
              "Degenerate: maps that are zero everywhere, left out of the statistics.", "",
              metrics.markdown_table(["Model", "Mean", "Std", "Min", "Max", "Scored",
                                      "Degenerate"], [
                  [k, v["mean"], v["std"], v["min"], v["max"], v["n"], v["degenerate"]]
                  for k, v in table_32.items()]), "",
              "## EHR AUC (Fig. 3.2)", "",
              metrics.markdown_table(["Model", "EHR AUC (mean)", "Std", "Degenerate"], [
                  [k, v["mean"], v["std"], v["degenerate"]] for k, v in ehr.items()]), "",
              "## One-way ANOVA and Tukey HSD on DiffGradCAM", "",
              metrics.tukey_markdown(statistics) if statistics else
              "(needs at least two models with two or more scored images)", "",
              "## Figures", "",
              "![Fig. 3.1 — Grad-CAM per model, mask outlined in white (three cases, as the "
              "thesis' figure)](figures/fig_3_1_gradcam.png)", "",
              "![Fig. 3.2 — EHR AUC per model (mean ± std)](figures/fig_3_2_ehr_auc.png)", ""]
    write_pages(out, f"{recipe.name} — Grad-CAM reliability benchmark", body,
                demo_note=demo_note, trace=trace, gallery=_gallery(runs, test))
    return document
