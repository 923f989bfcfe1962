"""EGD-CXR (PhysioNet "eye-gaze", Karargyris et al. 2021): tables and gaze heatmaps."""
