"""The MLMI 2024 run report (layout ``mlmi2024``): ``metrics.json``, ``report.md``, figures.

- Table 4.1: per-class one-vs-rest AUC, the overall AUC as the micro average (the authors'
  code; it reproduces the published numbers) with the macro mean beside it, and accuracy,
  for every classification stage.
- Table 4.2: KL, CC and HS (mean ± std over test images) for every saliency stage, with the
  two-sided paired t-test p-value of each against the reference stage (the proposed model),
  image by image.
- Grad-CAM against the gaze maps with the same saliency metrics, from ``[report]
  gradcam_stage`` (the study: the stage-1b DenseNet201 classifier, target dense block 4, as
  the authors' ``Module/cam_densenet.py``).
- ``figures/fig_4_2_examples.png``: example test images of each class — image, gaze truth,
  the predicted maps of ``[report] figure_saliency`` (ours, MT-UNet), Grad-CAM; a column whose
  stage did not run is omitted and the report says so. ``figures/roc_curves.png``:
  one-vs-rest ROC curves of the classification reference.
- ``report.html``: the same page with the figures inline and a gallery of every test case.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cxrkit import metrics
from cxrkit.explain import grad_cam
from cxrkit.figures import Panel, panel_grid, roc_figure, save_figure
from cxrkit.recipes.evaluate import SALIENCY_METRICS, per_image, summarise
from cxrkit.recipes.reports.common import trace_summary, write_pages
from cxrkit.recipes.reports.html import Case, case_name, gallery_html, overlay_tile


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


def gradcam_maps(recipe, stage_models: dict, test: dict) -> tuple[np.ndarray | None, str]:
    """Grad-CAM of the predicted class on the test images from ``[report] gradcam_stage`` (on
    ``gradcam_layer`` when set), and what made them; (None, why) when that stage did not run."""
    name = recipe.report.gradcam_stage
    if not name:
        return None, "no Grad-CAM stage is named in [report]"
    if name not in stage_models:
        return None, f"stage {name} is disabled in this profile"
    maps = np.concatenate([
        grad_cam(stage_models[name], test["image"][i:i + 16],
                 layer=recipe.report.gradcam_layer or None)
        for i in range(0, len(test["image"]), 16)])
    label = recipe.stages[name].label
    target = recipe.report.gradcam_layer or "its declared target"
    return maps, f"{label} (stage {name}; target {target}; predicted class)"


def against_gaze(maps: np.ndarray, test: dict) -> tuple[dict, dict]:
    """Per-image KL/CC/HS of ``maps`` against the gaze maps, and their summaries. A map that
    is zero everywhere explains nothing: it is undefined for all three, not scored."""
    degenerate = maps.reshape(len(maps), -1).max(axis=1) <= 0
    values = {k: per_image(f, np.maximum(maps[..., None], 1e-6), test["heatmap"])
              for k, f in SALIENCY_METRICS.items()}
    for v in values.values():
        v[degenerate] = np.nan
    return values, {k: summarise(v) for k, v in values.items()}


def _normalised(heat: np.ndarray) -> np.ndarray:
    heat = np.asarray(heat, np.float32).squeeze()
    return heat / max(float(heat.max()), 1e-12)


def example_cases(test: dict, per_class: int = 2) -> list[int]:
    """The Fig. 4.2 rows: the first ``per_class`` test images of each class."""
    classes = np.unique(test["label"])
    return [int(i) for c in classes for i in np.flatnonzero(test["label"] == c)[:per_class]]


def example_figure(test: dict, chosen: list[int], columns: dict[str, np.ndarray],
                   row_titles: list[str]):
    """Fig. 4.2: rows = ``chosen`` test images; image | gaze truth | one column per map in
    ``columns`` (title -> (N, H, W[, 1]) maps over the whole test split)."""
    rows = [[Panel(test["image"][i]), Panel(test["image"][i], _normalised(test["heatmap"][i])),
             *(Panel(test["image"][i], _normalised(maps[i])) for maps in columns.values())]
            for i in chosen]
    return panel_grid(rows, column_titles=["image", "gaze (truth)", *columns],
                      row_titles=row_titles)


def roc_curves(labels: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict:
    """One-vs-rest ROC curves, "class (AUC x)" -> (fpr, tpr), for each class that has both
    positive and negative test images."""
    curves = {}
    for c, name in enumerate(class_names):
        if 0 < (labels == c).sum() < len(labels):
            fpr, tpr = metrics.roc_curve((labels == c).astype(int), probs[:, c])
            auc = metrics.roc_auc((labels == c).astype(int), probs[:, c])
            curves[f"{name} (AUC {auc:.3f})"] = (fpr, tpr)
    return curves


def gallery(test: dict, class_names: list[str], *, probs: np.ndarray | None,
            columns: dict[str, np.ndarray], per_image_metrics: dict[str, dict]) -> str:
    """The report page's case gallery: every test image with its gaze truth, each map of
    ``columns``, the true and predicted class, the probabilities and each map's KL/CC/HS."""
    cases = []
    for i in range(len(test["label"])):
        tiles = {"image": overlay_tile(test["image"][i], None),
                 "gaze (truth)": overlay_tile(test["image"][i], _normalised(test["heatmap"][i]))}
        tiles.update({title: overlay_tile(test["image"][i], _normalised(maps[i]))
                      for title, maps in columns.items()})
        numbers = {}
        if probs is not None:
            numbers.update({f"P({n})": float(probs[i, c]) for c, n in enumerate(class_names)})
        for title, values in per_image_metrics.items():
            numbers.update({f"{k.upper()} {title}": float(v[i]) for k, v in values.items()})
        predicted = None if probs is None else class_names[int(np.argmax(probs[i]))]
        cases.append(Case(case_name(test, i), class_names[int(test["label"][i])], predicted,
                          tiles, numbers))
    return gallery_html(cases, class_names, note="Every test image; a red frame marks a wrong "
                        "prediction. Maps are normalised per image.")


def _jsonable(results: dict) -> dict:
    keep = ("label", "classification", "saliency")
    return {name: {k: r[k] for k in keep if k in r} for name, r in results.items()}


def write_report(out: Path, *, results: dict, test: dict, final_model, stage_models: dict,
                 recipe, class_names: list[str], demo_note: str | None, trace: dict) -> dict:
    """Writes metrics.json, report.md, report.html and figures/; returns the metrics
    document."""
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    cls_ref = recipe.report.classification_reference or None
    sal_ref = recipe.report.saliency_reference or None
    tests = paired_tests(results, sal_ref)
    cams, cam_source = gradcam_maps(recipe, stage_models, test)
    final = results.get(cls_ref, {})
    probs = final.get("probabilities")
    columns, missing, per_image_metrics = {}, [], {}
    for name in recipe.report.figure_saliency:
        if "predicted_saliency" in results.get(name, {}):
            columns[results[name]["label"]] = results[name]["predicted_saliency"]
            per_image_metrics[results[name]["label"]] = results[name]["per_image"]
        else:
            missing.append(f"{recipe.stages[name].label} (stage {name} is disabled in this "
                           "profile)")
    cam_summary = None
    if cams is not None:
        columns["Grad-CAM"] = cams
        per_image_metrics["Grad-CAM"], cam_summary = against_gaze(cams, test)
    else:
        missing.append(f"Grad-CAM ({cam_source})")
    chosen = example_cases(test)
    if columns and chosen:
        titles = [f"{class_names[int(test['label'][i])]}" + (
            "" if probs is None else f"\npredicted {class_names[int(np.argmax(probs[i]))]} "
            f"({float(np.max(probs[i])):.2f})") for i in chosen]
        save_figure(example_figure(test, chosen, columns, titles),
                    figures / "fig_4_2_examples.png")
    if probs is not None:
        save_figure(roc_figure(roc_curves(test["label"], probs, class_names),
                               title=f"ROC, one vs rest: {final['label']}"),
                    figures / "roc_curves.png")
    document = {"recipe": recipe.name, "demo": demo_note is not None,
                "test_images": int(len(test["label"])), "stages": _jsonable(results),
                "paired_ttests_vs_reference": {"reference": sal_ref, "tests": tests},
                "gradcam_vs_gaze": cam_summary, "gradcam_source": cam_source,
                "fig_4_2": {"rows": [int(i) for i in chosen],
                            "columns": ["image", "gaze (truth)", *columns],
                            "omitted": missing},
                "trace": trace_summary(trace)}
    (out / "metrics.json").write_text(json.dumps(document, indent=2) + "\n")
    counts = ", ".join(f"{n}: {int((test['label'] == i).sum())}"
                       for i, n in enumerate(class_names))
    omitted = ([f"Omitted from Fig. 4.2 and the gallery: {'; '.join(missing)}.", ""]
               if missing else [])
    body = [f"Test images: {len(test['label'])} ({counts}).",
            "", "## Table 4.1 — diagnosis", "", table_4_1(results, class_names), "",
            "## Table 4.2 — gaze saliency", "",
            f"p: two-sided paired t-test against "
            f"{results[sal_ref]['label'] if sal_ref in results else 'the reference'}, "
            "per test image.", "", table_4_2(results, tests), "",
            "## Grad-CAM against the gaze maps", "",
            f"Grad-CAM from {cam_source}.", "",
            metrics.markdown_table(["Map", "KL ↓", "CC ↑", "HS ↑"],
                                   [["Grad-CAM", *(_fmt(cam_summary[k])
                                                   for k in SALIENCY_METRICS)]])
            if cam_summary else "(not computed)", "",
            "## Figures", "", *omitted]
    if columns and chosen:
        body += ["![Fig. 4.2 — examples of each class: image, gaze truth, "
                 f"{', '.join(columns)}](figures/fig_4_2_examples.png)", ""]
    if probs is not None:
        body += [f"![ROC curves, one vs rest: {final['label']}](figures/roc_curves.png)", ""]
    write_pages(out, f"{recipe.name} — run report", body, demo_note=demo_note, trace=trace,
                gallery=gallery(test, class_names, probs=probs, columns=columns,
                                per_image_metrics=per_image_metrics))
    return document
