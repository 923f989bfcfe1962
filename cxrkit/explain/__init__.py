"""Visual explanations: batched Grad-CAM (and Grad-CAM++, HiResCAM), overlays, figure grids.

See ``docs/explain.md``.
"""

from cxrkit.explain.cam import METHODS, cam_model_for, grad_cam
from cxrkit.explain.overlay import colorize, comparison_grid, grid, outline, overlay, save_png

__all__ = ["METHODS", "cam_model_for", "colorize", "comparison_grid", "grad_cam", "grid",
           "outline", "overlay", "save_png"]
