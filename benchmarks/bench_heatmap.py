"""Gaze heatmap builder vs the study's native-resolution recipe.

Prints the time of each, their ratio (target: >= 50x) and the Pearson correlation of the two
maps (target: >= 0.9999) on a 3,000 x 2,400 image with 5,000 gaze samples.

    python benchmarks/bench_heatmap.py [--repeats 5]
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import best_time

from data_prep.egd_cxr.heatmap import STUDY_SIGMA, gaze_heatmap, reference_heatmap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shape = (3000, 2400)
    centres = rng.uniform((300, 300), (2100, 2700), (40, 2))
    points = centres[rng.integers(40, size=5000)] + rng.normal(0, 40, (5000, 2))
    x, y = points[:, 0], points[:, 1]

    reference = reference_heatmap(x, y, shape)
    fast = gaze_heatmap(x, y, None, shape, sigma=STUDY_SIGMA)
    slow_s = best_time(lambda: reference_heatmap(x, y, shape), args.repeats)
    fast_s = best_time(lambda: gaze_heatmap(x, y, None, shape, sigma=STUDY_SIGMA), args.repeats)
    cc = np.corrcoef(reference.ravel(), fast.ravel())[0, 1]
    print(f"reference (native count map, 501-px blur, pad, subsample): {slow_s * 1e3:9.1f} ms")
    print(f"cxrkit gaze_heatmap (target-grid splat + blur):            {fast_s * 1e3:9.1f} ms")
    print(f"speed-up: {slow_s / fast_s:.1f}x (target >= 50x)   Pearson CC: {cc:.6f} "
          "(target >= 0.9999)")


if __name__ == "__main__":
    main()
