"""The reports' figures, drawn with matplotlib's object-oriented API (no pyplot, no display).

Each function returns a :class:`matplotlib.figure.Figure` (rendered by the Agg canvas, so it
works on a headless machine); :func:`save_figure` writes it as PNG. The numbers behind every
figure are also in the run's ``metrics.json``, and tests read a figure's content from its
artists (line data, image arrays, titles, tick labels), not from its pixels.

- :func:`roc_figure`: one-vs-rest ROC curves with labelled axes, ticks and the chance diagonal;
- :func:`bar_figure`: bars with ± error bars and their values (Fig. 3.2, EHR AUC);
- :func:`panel_grid`: a grid of images with heatmap overlays, optional mask outlines, column
  and row titles and one colour bar (Fig. 3.1, Fig. 4.2).
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

HEAT_CMAP = "jet"
HEAT_ALPHA = 0.6  # opacity of the overlay where the heat is 0.5 or more
DPI = 110


def save_figure(figure: Figure, path: str | os.PathLike) -> None:
    """Writes ``figure`` as a PNG (tight bounding box, white background)."""
    figure.savefig(os.fspath(path), dpi=DPI, bbox_inches="tight", facecolor="white")


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], *, title: str) -> Figure:
    """ROC curves, label -> (false positive rates, true positive rates), on the unit square."""
    figure = Figure(figsize=(5.2, 5.0))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    for label, (fpr, tpr) in curves.items():
        axes.plot(fpr, tpr, linewidth=2, label=label)
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate",
             ylabel="true positive rate", xticks=np.linspace(0, 1, 6),
             yticks=np.linspace(0, 1, 6), aspect="equal")
    axes.set_title(title, fontsize=11)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def bar_figure(values: dict[str, float], *, errors: dict[str, float] | None = None,
               title: str, ylabel: str) -> Figure:
    """One bar per label with an optional ± error bar (e.g. mean ± std) and its value."""
    labels = list(values)
    heights = np.array([values[k] for k in labels], float)
    spread = np.array([(errors or {}).get(k, 0.0) for k in labels], float)
    figure = Figure(figsize=(max(4.0, 0.9 * len(labels) + 1.5), 4.2))
    axes = figure.add_subplot()
    bars = axes.bar(labels, heights, yerr=spread if errors else None, capsize=4,
                    color=[f"C{i % 10}" for i in range(len(labels))])
    axes.bar_label(bars, labels=[f"{h:.4f}" for h in heights], padding=3, fontsize=8)
    axes.set_ylim(0, max(float(np.max(heights + spread, initial=0.0)) * 1.2, 1e-6))
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=11)
    axes.tick_params(axis="x", labelrotation=30)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def _wrap(text: str, width: int) -> str:
    """``text`` wrapped at ``width`` characters, keeping its own line breaks."""
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


@dataclass(frozen=True)
class Panel:
    """One grid cell: a grayscale ``image`` (H, W[, 1]), an optional ``heat`` map in [0, 1]
    overlaid in colour, and an optional binary ``mask`` outlined."""

    image: np.ndarray
    heat: np.ndarray | None = None
    mask: np.ndarray | None = None


def panel_grid(rows: list[list[Panel]], *, column_titles: list[str],
               row_titles: list[str] | None = None, mask_color: str = "white",
               title: str = "", panel_inches: float = 2.0) -> Figure:
    """A grid of panels under one title per column (and beside one per row), with one colour
    bar for the heat scale. Heat is drawn over [0, 1] (pass maps normalised per image), more
    opaque where it is higher so that the image shows through where it is low; a map that is
    zero everywhere is labelled so. Titles wrap to the panel width."""
    if any(len(r) != len(column_titles) for r in rows):
        raise ValueError("every row needs one panel per column title")
    n_rows, n_cols = len(rows), len(column_titles)
    figure = Figure(figsize=(panel_inches * n_cols + 1.2, panel_inches * n_rows + 0.6))
    grid = figure.subplots(n_rows, n_cols, squeeze=False)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            axes = grid[r, c]
            axes.imshow(np.asarray(panel.image, np.float32).squeeze(), cmap="gray",
                        interpolation="nearest")
            if panel.heat is not None:
                heat = np.asarray(panel.heat, np.float32).squeeze()
                axes.imshow(heat, cmap=HEAT_CMAP, vmin=0.0, vmax=1.0,
                            alpha=HEAT_ALPHA * np.clip(heat / 0.5, 0.15, 1.0),
                            interpolation="nearest")
                if not heat.max() > 0:
                    axes.text(0.5, 0.5, "zero map", transform=axes.transAxes, ha="center",
                              va="center", color="white", fontsize=9,
                              bbox={"facecolor": "black", "alpha": 0.6, "linewidth": 0})
            if panel.mask is not None:
                axes.contour(np.asarray(panel.mask, np.float32).squeeze(), levels=[0.5],
                             colors=mask_color, linewidths=1.2)
            axes.set_xticks([])
            axes.set_yticks([])
            if r == 0:
                axes.set_title(_wrap(column_titles[c], 22), fontsize=9)
            if c == 0 and row_titles:
                axes.set_ylabel(_wrap(row_titles[r], 24), fontsize=8)
    figure.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap=HEAT_CMAP), ax=grid,
                    shrink=0.8, label="heat (normalised per map)")
    if title:
        figure.suptitle(title, fontsize=12)
    return figure
