"""The MLMI 2024 run report (layout ``mlmi2024``): ``metrics.json``, ``report.md``, figures.

- Table 4.1: per-class one-vs-rest AUC, the overall AUC as the micro average (the authors'
  code; it reproduces the published numbers) with the macro mean beside it, and accuracy,
  for every classification stage.
- Table 4.2: KL, CC and HS (mean ± std over test images) for every saliency stage, with the
  two-sided paired t-test p-value of each against the reference stage (the proposed model),
  image by image.
- Grad-CAM of the final model against the gaze maps with the same saliency metrics.
- ``figures/fig_4_2_examples.png``: example test images of each class — image, gaze truth,
  predicted saliency, Grad-CAM; ``figures/roc_curves.png``: one-vs-rest ROC curves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cxrkit import metrics
from cxrkit.explain import grad_cam, grid, overlay, save_png
from cxrkit.explain.overlay import to_gray_uint8
from cxrkit.plots import line_chart
from cxrkit.recipes.evaluate import SALIENCY_METRICS, per_image, summarise
from cxrkit.recipes.reports.common import trace_summary, write_markdown


def _fmt(summary: dict | None) -> str:
    if summary is None or summary["mean"] is None:
        return "n/a"
    text = f"{summary['mean']:.3f} ± {summary['std']:.3f}"
    return text + (f" ({summary['undefined']} undefined)" if summary["undefined"] else "")


def _p(value) -> str:
    return "—" if value is None else (f"{value:.3g}" if value < 1e-3 else f"{value:.4f}")


def table_4_1(results: dict, class_names: list[str]) -> str:
    rows = []
    for r in results.values():
        if "classification" in r:
            c = r["classification"]
            per = c.get("auc_per_class", {})
            rows.append([r["label"], *[per.get(n, float("nan")) for n in class_names],
                         c["auc"], c.get("auc_macro", c["auc"]), c["accuracy"]])
    return metrics.markdown_table(["Model", *[f"AUC {n}" for n in class_names], "AUC (micro)",
                                   "AUC (macro)", "Accuracy"], rows)


def paired_tests(results: dict, reference: str | None) -> dict:
    """p-values of paired t-tests of each saliency stage against ``reference``."""
    if reference not in results or "per_image" not in results[reference]:
        return {}
    ref = results[reference]["per_image"]
    tests = {}
    for name, r in results.items():
        if name == reference or "per_image" not in r:
            continue
        tests[name] = {}
        for key in SALIENCY_METRICS:
            both = np.isfinite(ref[key]) & np.isfinite(r["per_image"][key])
            tests[name][key] = (metrics.paired_ttest(ref[key][both], r["per_image"][key][both])
                                if both.sum() >= 2 else None)
    return tests


def table_4_2(results: dict, tests: dict) -> str:
    rows = []
    for name, r in results.items():
        if "saliency" not in r:
            continue
        s = r["saliency"]
        p = [_p(tests[name][k]["p"]) if name in tests and tests[name][k] else "—"
             for k in SALIENCY_METRICS]
        rows.append([r["label"], _fmt(s["kl"]), _fmt(s["cc"]), _fmt(s["hs"]), *p])
    return metrics.markdown_table(["Model", "KL ↓", "CC ↑", "HS ↑", "p (KL)", "p (CC)",
                                   "p (HS)"], rows)


def gradcam_vs_gaze(model, test: dict) -> tuple[np.ndarray, dict]:
    """Grad-CAM maps of the final model and their KL/CC/HS against the gaze maps."""
    maps = grad_cam(model, test["image"])
    values = {k: per_image(f, np.maximum(maps[..., None], 1e-6), test["heatmap"])
              for k, f in SALIENCY_METRICS.items()}
    return maps, {k: summarise(v) for k, v in values.items()}


def example_figure(test: dict, saliency: np.ndarray, cams: np.ndarray | None,
                   class_names: list[str], per_class: int = 2) -> np.ndarray:
    """Fig. 4.2: rows = examples of each class; image | gaze | predicted saliency | Grad-CAM
    (the last column only when the final model classifies)."""
    rows = []
    for c in range(len(class_names)):
        for i in np.flatnonzero(test["label"] == c)[:per_class]:
            gray = to_gray_uint8(test["image"][i])
            heat = test["heatmap"][i, ..., 0]
            sal = saliency[i, ..., 0] / max(float(saliency[i].max()), 1e-12)
            row = [np.repeat(gray[..., None], 3, -1),
                   overlay(test["image"][i], heat / max(float(heat.max()), 1e-12)),
                   overlay(test["image"][i], sal)]
            rows.append(row if cams is None else [*row, overlay(test["image"][i], cams[i])])
    titles = ["image", "gaze truth", "predicted"] + ([] if cams is None else ["Grad-CAM"])
    return grid(rows, column_titles=titles)


def roc_figure(labels: np.ndarray, probs: np.ndarray, class_names: list[str], title: str):
    series = {}
    for c, name in enumerate(class_names):
        if 0 < (labels == c).sum() < len(labels):
            fpr, tpr = metrics.roc_curve((labels == c).astype(int), probs[:, c])
            auc = metrics.roc_auc((labels == c).astype(int), probs[:, c])
            series[f"{name} (AUC {auc:.3f})"] = (fpr, tpr)
    return line_chart(series, title=title, xlabel="false positive rate",
                      ylabel="true positive rate", diagonal=True)


def _jsonable(results: dict) -> dict:
    keep = ("label", "classification", "saliency")
    return {name: {k: r[k] for k in keep if k in r} for name, r in results.items()}


def write_report(out: Path, *, results: dict, test: dict, final_model, recipe,
                 class_names: list[str], demo_note: str | None, trace: dict) -> dict:
    """Writes metrics.json, report.md and figures/; returns the metrics document."""
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    cls_ref = recipe.report.classification_reference or None
    sal_ref = recipe.report.saliency_reference or None
    tests = paired_tests(results, sal_ref)
    cams, cam_summary = (gradcam_vs_gaze(final_model, test) if hasattr(final_model, "cam_model")
                         else (None, None))
    final = results.get(cls_ref, {})
    saliency = results.get(sal_ref, {}).get("predicted_saliency")
    if isinstance(final_model.output, dict) and "saliency" in final_model.output:
        saliency = final_model.predict(test["image"], verbose=0)["saliency"]
    if saliency is not None:
        save_png(figures / "fig_4_2_examples.png",
                 example_figure(test, saliency, cams, class_names))
    if "probabilities" in final:
        save_png(figures / "roc_curves.png",
                 roc_figure(test["label"], final["probabilities"], class_names,
                            f"ROC, one vs rest: {final['label']}"))
    document = {"recipe": recipe.name, "demo": demo_note is not None,
                "test_images": int(len(test["label"])), "stages": _jsonable(results),
                "paired_ttests_vs_reference": {"reference": sal_ref, "tests": tests},
                "gradcam_vs_gaze": cam_summary,
                "trace": trace_summary(trace)}
    (out / "metrics.json").write_text(json.dumps(document, indent=2) + "\n")
    counts = ", ".join(f"{n}: {int((test['label'] == i).sum())}"
                       for i, n in enumerate(class_names))
    body = [f"Test images: {len(test['label'])} ({counts}).",
              "", "## Table 4.1 — diagnosis", "", table_4_1(results, class_names), "",
              "## Table 4.2 — gaze saliency", "",
              f"p: two-sided paired t-test against "
              f"{results[sal_ref]['label'] if sal_ref in results else 'the reference'}, "
              "per test image.", "", table_4_2(results, tests), "",
              "## Grad-CAM of the final model against the gaze maps", "",
              metrics.markdown_table(["Map", "KL ↓", "CC ↑", "HS ↑"],
                                     [["Grad-CAM", *(_fmt(cam_summary[k])
                                                     for k in SALIENCY_METRICS)]])
              if cam_summary else "(the final model does not classify)", "",
              "## Figures", "", "- `figures/fig_4_2_examples.png` — image, gaze truth, "
              "predicted saliency, Grad-CAM", "- `figures/roc_curves.png` — ROC curves", ""]
    write_markdown(out, f"{recipe.name} — run report", body, demo_note=demo_note,
                   trace=trace)
    return document
