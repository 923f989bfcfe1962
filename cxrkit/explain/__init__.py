"""Visual explanations: batched Grad-CAM (and Grad-CAM++, HiResCAM) and overlays.

See ``docs/explain.md``.
"""

from cxrkit.explain.cam import METHODS, cam_model_for, grad_cam
from cxrkit.explain.overlay import colorize, outline, overlay, save_png

__all__ = ["METHODS", "cam_model_for", "colorize", "grad_cam", "outline", "overlay",
           "save_png"]
