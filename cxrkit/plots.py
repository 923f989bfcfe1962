"""Small charts drawn with OpenCV (no plotting library): line charts and bar charts as RGB.

Enough for the reports' ROC curves (Fig. 4.x) and the EHR-AUC bar chart (Fig. 3.2); the
numbers behind every chart are in the run's ``metrics.json``.
"""

from __future__ import annotations

import cv2
import numpy as np

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


class _Axes:
    def __init__(self, size, x_range, y_range, title, xlabel, ylabel):
        self.w, self.h = size
        self.left, self.right, self.top, self.bottom = 60, 20, 30, 50
        self.x_range, self.y_range = x_range, y_range
        self.canvas = np.full((self.h, self.w, 3), 255, np.uint8)
        c = self.canvas
        cv2.rectangle(c, (self.left, self.top), (self.w - self.right, self.h - self.bottom),
                      (0, 0, 0), 1)
        cv2.putText(c, title, (self.left, 20), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(c, xlabel, (self.w // 2 - 4 * len(xlabel), self.h - 10), _FONT, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(c, ylabel, (4, self.top - 8), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
            value = y_range[0] + frac * (y_range[1] - y_range[0])
            y = self.py(value)
            cv2.line(c, (self.left - 4, y), (self.left, y), (0, 0, 0), 1)
            cv2.putText(c, f"{value:.2g}", (8, y + 4), _FONT, 0.35, (0, 0, 0), 1, cv2.LINE_AA)

    def px(self, x):
        span = self.x_range[1] - self.x_range[0]
        return int(round(self.left + (x - self.x_range[0]) / span * (self.w - self.left -
                                                                     self.right)))

    def py(self, y):
        span = self.y_range[1] - self.y_range[0]
        return int(round(self.h - self.bottom - (y - self.y_range[0]) / span *
                         (self.h - self.top - self.bottom)))

    def legend(self, labels):
        for i, label in enumerate(labels):
            color = PALETTE[i % len(PALETTE)]
            y = self.h - self.bottom - 12 - 16 * (len(labels) - 1 - i)
            x = self.w - self.right - 190
            cv2.line(self.canvas, (x, y - 4), (x + 20, y - 4), color, 2)
            cv2.putText(self.canvas, label[:26], (x + 26, y), _FONT, 0.38, (0, 0, 0), 1,
                        cv2.LINE_AA)


def line_chart(series: dict[str, tuple[np.ndarray, np.ndarray]], *, title: str = "",
               xlabel: str = "", ylabel: str = "", x_range=(0.0, 1.0), y_range=(0.0, 1.0),
               diagonal: bool = False, size=(520, 420)) -> np.ndarray:
    """One polyline per series (label -> (x, y)), with a legend; uint8 RGB."""
    axes = _Axes(size, x_range, y_range, title, xlabel, ylabel)
    if diagonal:
        cv2.line(axes.canvas, (axes.px(x_range[0]), axes.py(y_range[0])),
                 (axes.px(x_range[1]), axes.py(y_range[1])), (180, 180, 180), 1)
    for i, (x, y) in enumerate(series.values()):
        points = np.array([[axes.px(a), axes.py(b)] for a, b in zip(x, y, strict=True)],
                          np.int32)
        cv2.polylines(axes.canvas, [points], False, PALETTE[i % len(PALETTE)], 2, cv2.LINE_AA)
    axes.legend(list(series))
    return axes.canvas


def bar_chart(values: dict[str, float], *, errors: dict[str, float] | None = None,
              title: str = "", ylabel: str = "", size=None) -> np.ndarray:
    """One bar per label (with an optional ± error bar), value printed above; uint8 RGB."""
    reach = [v + (errors or {}).get(k, 0.0) for k, v in values.items()]
    top = max(max(reach, default=1.0) * 1.15, 1e-9)
    size = size or (max(120 + 70 * len(values), 360), 400)
    axes = _Axes(size, (0.0, float(len(values))), (0.0, top), title, "", ylabel)
    for i, (label, value) in enumerate(values.items()):
        x0, x1 = axes.px(i + 0.15), axes.px(i + 0.85)
        cv2.rectangle(axes.canvas, (x0, axes.py(value)), (x1, axes.py(0.0)),
                      PALETTE[i % len(PALETTE)], -1)
        if errors and label in errors:
            xc = (x0 + x1) // 2
            low, high = axes.py(max(value - errors[label], 0.0)), axes.py(value + errors[label])
            cv2.line(axes.canvas, (xc, low), (xc, high), (0, 0, 0), 1)
            for y in (low, high):
                cv2.line(axes.canvas, (xc - 5, y), (xc + 5, y), (0, 0, 0), 1)
        cv2.putText(axes.canvas, f"{value:.4f}", (x0, axes.py(value) - 4), _FONT, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(axes.canvas, label[:10], (x0, axes.h - axes.bottom + 16), _FONT, 0.38,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return axes.canvas
