"""Gaze heatmaps: the fast builder against the study's native-resolution recipe."""

import numpy as np
import pytest

from cxrkit.preprocessing import EgdCxrPreprocessing, Geometry
from data_prep.egd_cxr.heatmap import STUDY_SIGMA, gaze_heatmap, kernel_sigma, reference_heatmap


def resample_image(pixels, target):
    return EgdCxrPreprocessing(target).resample(pixels)


def test_opencv_sigma_rule():
    assert kernel_sigma(501) == pytest.approx(75.5) == STUDY_SIGMA
    assert kernel_sigma(3) == pytest.approx(0.8)


def _points(rng, shape, n=800):
    centres = rng.uniform((0.1 * shape[1], 0.1 * shape[0]), (0.9 * shape[1], 0.9 * shape[0]),
                          (12, 2))
    pts = centres[rng.integers(12, size=n)] + rng.normal(0, 0.02 * shape[0], (n, 2))
    return pts[:, 0], pts[:, 1]


@pytest.mark.parametrize("shape", [(600, 480), (550, 500), (700, 400)])
def test_matches_reference_recipe(shape):
    rng = np.random.default_rng(0)
    x, y = _points(rng, shape)
    ksize = 101
    fast = gaze_heatmap(x, y, None, shape, target=(128, 96), sigma=kernel_sigma(ksize))
    slow = reference_heatmap(x, y, shape, target=(128, 96), ksize=ksize)
    assert fast.dtype == np.float32 and fast.min() == 0.0 and fast.max() == 1.0
    assert np.corrcoef(fast.ravel(), slow.ravel())[0, 1] > 0.999


def test_off_image_points_are_dropped_and_weights_count():
    shape = (200, 160)
    x = np.array([40.0, -5.0, 500.0, 120.0])
    y = np.array([50.0, 60.0, 10.0, 150.0])
    counted = gaze_heatmap(x, y, None, shape, target=(100, 80), sigma=4.0)
    only_on = gaze_heatmap(x[[0, 3]], y[[0, 3]], None, shape, target=(100, 80), sigma=4.0)
    np.testing.assert_allclose(counted, only_on)
    weighted = gaze_heatmap(x, y, np.array([1.0, 9.0, 9.0, 3.0]), shape, target=(100, 80),
                            sigma=4.0)
    assert np.unravel_index(np.argmax(weighted), weighted.shape) == (75, 60)  # (150, 120) / 2
    assert np.unravel_index(np.argmax(counted), counted.shape) in {(25, 20), (75, 60)}
    with pytest.raises(ValueError, match="no gaze point"):
        gaze_heatmap(np.array([-1.0]), np.array([3.0]), None, shape, target=(100, 80))


def test_image_geometry_pads_bottom_or_right():
    wide = np.ones((100, 100), np.float32)
    wide[0, 0] = 0
    out = resample_image(wide, (64, 48))
    assert Geometry((100, 100), (64, 48)).region == (48, 48)
    assert out[:48].max() == 1.0 and not out[48:].any()  # padded below
    tall = np.ones((300, 100), np.float32)
    tall[0, 0] = 0
    assert Geometry((300, 100), (64, 48)).region == (64, 21)
    assert not resample_image(tall, (64, 48))[:, 21:].any()  # padded on the right
