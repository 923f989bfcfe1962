"""The report figures (matplotlib) hold the data they are given: read back from their artists."""

from __future__ import annotations

import numpy as np
from matplotlib.image import AxesImage

from cxrkit.figures import Panel, bar_figure, panel_grid, roc_figure, save_figure


def test_roc_figure_has_labelled_ticked_axes_and_the_curves(tmp_path):
    curves = {"CHF (AUC 0.750)": (np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 1.0])),
              "Normal (AUC 1.000)": (np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0]))}
    figure = roc_figure(curves, title="ROC, one vs rest: ours")
    (axes,) = figure.axes
    assert axes.get_xlabel() == "false positive rate"
    assert axes.get_ylabel() == "true positive rate"
    assert axes.get_title() == "ROC, one vs rest: ours"
    np.testing.assert_allclose(axes.get_xticks(), [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert set(lines) == {"chance", *curves}
    for label, (fpr, tpr) in curves.items():
        np.testing.assert_array_equal(lines[label].get_xdata(), fpr)
        np.testing.assert_array_equal(lines[label].get_ydata(), tpr)
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert legend == ["chance", *curves]
    # the title sits above the axes, clear of the tick labels and the axis label
    figure.canvas.draw()
    title_box = axes.title.get_window_extent()
    assert title_box.y0 >= axes.get_window_extent().y1 - 1
    save_figure(figure, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bar_figure_bars_error_bars_and_values():
    figure = bar_figure({"VGG16": 0.0243, "ResNet101": 0.0319}, errors={"VGG16": 0.01,
                                                                        "ResNet101": 0.002},
                        title="EHR AUC", ylabel="EHR AUC")
    (axes,) = figure.axes
    heights = [patch.get_height() for patch in axes.patches]
    np.testing.assert_allclose(heights, [0.0243, 0.0319])
    assert [t.get_text() for t in axes.get_xticklabels()] == ["VGG16", "ResNet101"]
    texts = [t.get_text() for t in axes.texts]
    assert texts == ["0.0243", "0.0319"]
    caps = np.sort(np.concatenate([np.asarray(line.get_ydata(), float)
                                   for line in axes.get_lines()]))
    np.testing.assert_allclose(caps, [0.0143, 0.0299, 0.0339, 0.0343])  # value ± error
    assert axes.get_ylim()[1] > 0.0343  # the error bars fit inside the axes


def test_panel_grid_places_images_heat_and_mask_outlines():
    image = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    heat = np.zeros((32, 32))
    heat[4:12, 4:12] = 1.0
    mask = np.zeros((32, 32))
    mask[10:20, 10:20] = 1
    rows = [[Panel(image, mask=mask), Panel(image, heat, mask)],
            [Panel(image), Panel(image, heat)]]
    figure = panel_grid(rows, column_titles=["image", "VGG16"], row_titles=["case 1", "case 2"])
    grid_axes = [a for a in figure.axes if a.images]
    assert len(grid_axes) == 4
    assert [a.get_title() for a in grid_axes[:2]] == ["image", "VGG16"]
    assert grid_axes[0].get_ylabel() == "case 1" and grid_axes[2].get_ylabel() == "case 2"
    layers = [[im for im in a.get_children() if isinstance(im, AxesImage)] for a in grid_axes]
    assert [len(x) for x in layers] == [1, 2, 1, 2]
    np.testing.assert_array_equal(layers[1][1].get_array(), heat)
    assert layers[1][1].get_clim() == (0.0, 1.0)
    outlined = [a for a in grid_axes if a.collections]
    assert outlined == grid_axes[:2]  # the mask contour on the first row only
    colour = outlined[1].collections[0].get_edgecolor()
    np.testing.assert_allclose(np.asarray(colour)[0][:3], [1, 1, 1])  # white, as the thesis
    colorbars = [a for a in figure.axes if a not in grid_axes]
    assert len(colorbars) == 1 and "heat" in colorbars[0].get_ylabel()
