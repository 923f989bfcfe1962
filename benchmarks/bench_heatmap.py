"""Gaze heatmap builder vs the study's native-resolution recipe.

Prints the time of each, their ratio (target: >= 50x) and the Pearson correlation of the two
maps on a 3,000 x 2,400 image with 5,000 gaze samples, centred on the study's 3200 x 2560
canvas: against the recipe resampled by area as cxrkit resamples the images (target >= 0.9999)
and against the authors' every-fifth-pixel sampling.

    python benchmarks/bench_heatmap.py [--repeats 5]
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import best_time

from cxrkit.preprocessing import Geometry
from data_prep.egd_cxr.heatmap import STUDY_SIGMA, TARGET, gaze_heatmap, reference_heatmap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shape = (3000, 2400)
    centres = rng.uniform((300, 300), (2100, 2700), (40, 2))
    points = centres[rng.integers(40, size=5000)] + rng.normal(0, 40, (5000, 2))
    x, y = points[:, 0], points[:, 1]

    geometry = Geometry(shape, TARGET)
    area = reference_heatmap(x, y, geometry, sampling="area")
    stride = reference_heatmap(x, y, geometry)
    fast = gaze_heatmap(x, y, None, geometry, sigma=STUDY_SIGMA)
    slow_s = best_time(lambda: reference_heatmap(x, y, geometry), args.repeats)
    fast_s = best_time(lambda: gaze_heatmap(x, y, None, geometry, sigma=STUDY_SIGMA),
                       args.repeats)
    cc_area, cc_stride = (np.corrcoef(r.ravel(), fast.ravel())[0, 1] for r in (area, stride))
    print(f"reference (native count map, 501-px blur, canvas, subsample): {slow_s * 1e3:9.1f} ms")
    print(f"cxrkit gaze_heatmap (target-grid splat + blur):               {fast_s * 1e3:9.1f} ms")
    print(f"speed-up: {slow_s / fast_s:.1f}x (target >= 50x)")
    print(f"Pearson CC with the area-resampled recipe: {cc_area:.6f} (target >= 0.9999); "
          f"with every fifth pixel: {cc_stride:.6f}")


if __name__ == "__main__":
    main()
