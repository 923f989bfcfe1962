"""The OpenCV charts draw their data where the axes say."""

from __future__ import annotations

import numpy as np

from cxrkit.plots import PALETTE, bar_chart, line_chart


def test_line_chart_draws_each_series_in_its_colour():
    chart = line_chart({"a": (np.array([0.0, 1.0]), np.array([0.0, 1.0])),
                        "b": (np.array([0.0, 1.0]), np.array([1.0, 1.0]))})
    assert chart.dtype == np.uint8 and chart.shape == (420, 520, 3)
    for colour in PALETTE[:2]:
        assert (chart == colour).all(axis=-1).sum() > 100


def test_bar_heights_follow_the_values_and_error_bars_fit():
    chart = bar_chart({"x": 0.2, "y": 0.1}, errors={"x": 0.1, "y": 0.0})
    heights = [(chart == colour).all(axis=-1).any(axis=1).sum() for colour in PALETTE[:2]]
    assert abs(heights[0] / heights[1] - 2.0) < 0.1
    black = (chart == 0).all(axis=-1)
    rows = np.flatnonzero(black[:, 80:-30].any(axis=1))  # error bars and the axes frame
    assert rows.min() >= 30  # the axes' top margin: the error bar (up to 0.3) fits inside
