"""Gaze heatmaps and the image geometry they share: the fast builder against the study's
native-resolution recipe, and both placements against hand-built canvases."""

import cv2
import numpy as np
import pytest

from cxrkit.preprocessing import EgdCxrPreprocessing, Geometry
from data_prep.egd_cxr.heatmap import (
    STUDY_SIGMA,
    dwell_map,
    gaze_heatmap,
    kernel_sigma,
    reference_heatmap,
)


def test_opencv_sigma_rule():
    assert kernel_sigma(501) == pytest.approx(75.5) == STUDY_SIGMA
    assert kernel_sigma(3) == pytest.approx(0.8)


def _points(rng, shape, n=800):
    centres = rng.uniform((0.1 * shape[1], 0.1 * shape[0]), (0.9 * shape[1], 0.9 * shape[0]),
                          (12, 2))
    pts = centres[rng.integers(12, size=n)] + rng.normal(0, 0.02 * shape[0], (n, 2))
    return pts[:, 0], pts[:, 1]


@pytest.mark.parametrize("placement", ["centre", "fit"])
@pytest.mark.parametrize("shape", [(600, 480), (550, 500), (700, 400)])
def test_matches_reference_recipe(shape, placement):
    """Against the native recipe resampled by area (as the images are) and strided (as the
    authors' code keeps every fifth pixel); (550, 500) is cropped by the centring canvas."""
    rng = np.random.default_rng(0)
    x, y = _points(rng, shape)
    ksize = 101
    geometry = Geometry(shape, (128, 96), placement, canvas=(640, 480))
    fast = gaze_heatmap(x, y, None, geometry, sigma=kernel_sigma(ksize))
    area = reference_heatmap(x, y, geometry, ksize=ksize, sampling="area")
    stride = reference_heatmap(x, y, geometry, ksize=ksize)
    assert fast.dtype == np.float32 and fast.min() == 0.0 and fast.max() == 1.0
    assert np.corrcoef(fast.ravel(), area.ravel())[0, 1] > 0.999
    assert np.corrcoef(fast.ravel(), stride.ravel())[0, 1] > 0.99


def test_off_image_points_are_dropped_and_weights_count():
    shape = (200, 160)
    geometry = Geometry(shape, (100, 80), "fit")
    x = np.array([40.0, -5.0, 500.0, 120.0])
    y = np.array([50.0, 60.0, 10.0, 150.0])
    counted = gaze_heatmap(x, y, None, geometry, sigma=4.0)
    only_on = gaze_heatmap(x[[0, 3]], y[[0, 3]], None, geometry, sigma=4.0)
    np.testing.assert_allclose(counted, only_on)
    weighted = gaze_heatmap(x, y, np.array([1.0, 9.0, 9.0, 3.0]), geometry, sigma=4.0)
    assert np.unravel_index(np.argmax(weighted), weighted.shape) == (75, 60)  # (150, 120) / 2
    assert np.unravel_index(np.argmax(counted), counted.shape) in {(25, 20), (75, 60)}
    with pytest.raises(ValueError, match="no gaze point"):
        gaze_heatmap(np.array([-1.0]), np.array([3.0]), None, geometry)


def test_fit_pads_bottom_or_right():
    wide = np.ones((100, 100), np.float32)
    wide[0, 0] = 0
    out = EgdCxrPreprocessing((64, 48), "fit").resample(wide)
    assert Geometry((100, 100), (64, 48), "fit").footprint == (48, 48)
    assert out[:48].max() == 1.0 and not out[48:].any()  # padded below
    tall = np.ones((300, 100), np.float32)
    tall[0, 0] = 0
    assert Geometry((300, 100), (64, 48), "fit").footprint == (64, 21)
    assert not EgdCxrPreprocessing((64, 48), "fit").resample(tall)[:, 21:].any()  # right


def test_centre_places_unscaled_on_the_canvas_and_crops_the_overflow():
    """The authors' placement by hand: pad (or crop) to the canvas with their
    ``int((W - w) / 2)`` offsets, then 2 x 2 block means for a canvas twice the target."""
    rng = np.random.default_rng(1)
    canvas, target = (120, 80), (60, 40)
    for shape, (top, left) in [((100, 60), (10, 10)), ((100, 95), (10, -7)),
                               ((125, 70), (-2, 5))]:
        native = rng.uniform(0, 1, shape).astype(np.float32)
        geometry = Geometry(shape, target, "centre", canvas)
        assert geometry.offset == (top, left)  # -7: int(-7.5) truncates toward zero
        board = np.zeros(canvas, np.float32)
        rows, cols = slice(max(0, top), top + shape[0]), slice(max(0, left), left + shape[1])
        board[rows, cols] = native[max(0, -top):, max(0, -left):][: board[rows, cols].shape[0],
                                                                  : board[rows, cols].shape[1]]
        want = board.reshape(60, 2, 40, 2).mean(axis=(1, 3))
        np.testing.assert_allclose(geometry.resample(native), want, atol=1e-6)
    covered = Geometry((100, 60), target, "centre", canvas).covered
    assert covered == (slice(5, 55), slice(5, 35))
    odd = Geometry((101, 61), target, "centre", canvas)  # origin (4.5, 4.5): half pixels
    assert odd.covered == (slice(4, 55), slice(4, 35))


def test_stride_reference_is_every_fifth_canvas_pixel():
    """``reference_heatmap``'s default is the authors' recipe: count, 501-style blur, / max,
    place on the canvas, keep every fifth pixel, min-max."""
    rng = np.random.default_rng(2)
    shape, canvas, target, ksize = (100, 60), (120, 80), (24, 16), 21
    x, y = rng.uniform(0, 60, 300), rng.uniform(0, 100, 300)
    counts = np.zeros(shape, np.float32)
    np.add.at(counts, (y.astype(int), x.astype(int)), 1.0)
    blurred = cv2.GaussianBlur(counts, (ksize, ksize), 0)
    board = np.zeros(canvas, np.float32)
    board[10:110, 10:70] = blurred / blurred.max()
    want = board[::5, ::5]
    want = (want - want.min()) / (want.max() - want.min())
    got = reference_heatmap(x, y, Geometry(shape, target, "centre", canvas), ksize=ksize)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_heatmap_and_image_land_on_the_same_pixels():
    """A bright square and gaze on its centre: the heatmap's peak sits on the square in the
    resampled image, in both placements, cropped or not."""
    for placement, shape in [("centre", (150, 100)), ("centre", (110, 150)), ("fit", (150, 100))]:
        native = np.zeros(shape, np.float32)
        native[60:70, 40:50] = 1.0
        pre = EgdCxrPreprocessing((64, 64), placement, canvas=(160, 160))
        image = pre.resample(native)
        heat = gaze_heatmap(np.full(50, 44.5), np.full(50, 64.5), None,
                            pre.geometry(shape), sigma=3.0)
        peak = np.unravel_index(np.argmax(heat), heat.shape)
        assert image[peak] > 0.5, (placement, shape, peak)


def test_dwell_map_is_gazegnn_input_rule():
    """Each fixation's dwell (time since the previous one, the first its own time) as
    log(dwell + 0.01) - log(0.01) at its pixel, over the maximum; an off-image fixation still
    ends the previous one's dwell."""
    geometry = Geometry((50, 40), (50, 40), "fit")  # one native pixel per target pixel
    x = np.array([5.0, 10.0, -3.0, 30.0])
    y = np.array([5.0, 20.0, 7.0, 40.0])
    time = np.array([1.0, 1.5, 2.5, 3.0])
    got = dwell_map(x, y, time, geometry)
    values = np.log(np.array([1.0, 0.5, 0.5]) + 0.01) - np.log(0.01)
    want = np.zeros((50, 40), np.float32)
    want[5, 5], want[20, 10], want[40, 30] = values / values.max()
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not dwell_map(np.array([-1.0]), np.array([1.0]), np.array([1.0]), geometry).any()
