"""Synthetic PA chest radiographs with known anatomy and a planted finding.

The picture follows the radiological convention: the patient's right lung is on the image's
left, the heart bulges to the image's right, and intensities are MONOCHROME2 (dense = bright).
It is built from layers a radiologist would name: the soft-tissue body with its cranio-caudal
gradient, two lucent lung fields, mediastinum with the trachea, spine, heart, clavicles,
posterior and anterior ribs, and vascular lung markings branching from the hila. One finding
may be planted:

* ``"pneumothorax"``: the lung collapses towards its hilum; the rim between the chest wall and
  the collapsed lung is darker and has no lung markings, and the visceral pleural line (the
  collapsed lung edge) shows as a thin bright line. The rim is the finding mask.
* ``"chf"``: an enlarged cardiac silhouette (cardiothoracic ratio 0.58-0.68 instead of
  0.40-0.48) with hazy perihilar ("bat-wing") opacity and thicker vessels.
* ``"pneumonia"``: a focal, irregular airspace opacity in one lung.

Everything is drawn at a working resolution of at most ``work_size`` pixels on the long side
(so a 3,000-pixel image costs about as much as a 768-pixel one) and resized to the requested
shape; per-pixel noise is added at the final resolution. All randomness comes from the given
``numpy.random.Generator``, so a seed fixes the picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FINDINGS = ("none", "pneumothorax", "chf", "pneumonia")

# Right lung (image left) outline in (u, v) = (column, row) fractions, clockwise from the apex.
_RIGHT_LUNG = np.array(
    [
        (0.30, 0.12), (0.37, 0.14), (0.42, 0.22), (0.44, 0.40), (0.44, 0.62), (0.40, 0.72),
        (0.32, 0.73), (0.22, 0.76), (0.14, 0.80), (0.12, 0.72), (0.11, 0.55), (0.13, 0.35),
        (0.20, 0.18),
    ]
)
_HILUM = (0.40, 0.45)


@dataclass(frozen=True)
class Phantom:
    """One synthetic radiograph and its ground truth, all of shape ``(rows, cols)``.

    Attributes:
        image: float32 in [0, 1], MONOCHROME2.
        lungs: bool, both lung fields as drawn (behind the heart included).
        finding: bool, where the planted finding is; all False for ``"none"``. For CHF this is
            the enlarged heart and the perihilar haze.
        heart: bool, the cardiac silhouette.
    """

    image: np.ndarray
    lungs: np.ndarray
    finding: np.ndarray
    heart: np.ndarray


class _Canvas:
    """Drawing helpers on a (rows, cols) grid addressed in (u, v) fractions."""

    def __init__(self, rows: int, cols: int):
        self.rows, self.cols = rows, cols
        self.v, self.u = np.mgrid[0:rows, 0:cols].astype(np.float32)
        self.v /= rows
        self.u /= cols

    def points(self, uv: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(uv) * (self.cols, self.rows)).astype(np.int32)

    def polygon(self, uv: np.ndarray) -> np.ndarray:
        mask = np.zeros((self.rows, self.cols), np.uint8)
        cv2.fillPoly(mask, [self.points(uv)], 1)
        return mask.astype(bool)

    def ellipse(self, center, axes) -> np.ndarray:
        (cu, cv), (au, av) = center, axes
        return ((self.u - cu) / au) ** 2 + ((self.v - cv) / av) ** 2 <= 1.0

    def soft(self, mask: np.ndarray, sigma_frac: float) -> np.ndarray:
        sigma = max(sigma_frac * self.cols, 0.5)
        return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)

    def lines(self, polylines, thickness_frac: float) -> np.ndarray:
        layer = np.zeros((self.rows, self.cols), np.float32)
        thickness = max(int(round(thickness_frac * self.cols)), 1)
        for uv in polylines:
            cv2.polylines(layer, [self.points(uv)], False, 1.0, thickness, cv2.LINE_AA)
        return layer


def _jittered_lungs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Both lung outlines with a shared build (width, height) and small independent jitter."""
    widen = rng.uniform(-0.02, 0.02)
    lower = rng.uniform(-0.03, 0.03)
    right = _RIGHT_LUNG.copy()
    right[:, 0] += widen * (right[:, 0] < 0.3) * -1.0
    right[:, 1] += lower * (right[:, 1] > 0.6)
    right += rng.normal(0, 0.004, right.shape)
    left = right.copy()
    left[:, 0] = 1.0 - left[:, 0]
    left += rng.normal(0, 0.004, left.shape)
    left[:, 1] += 0.015  # the left hemidiaphragm usually sits a little lower
    return right, left


def _vessel_tree(rng: np.random.Generator, hilum, side: int, count: int):
    """Branching polylines radiating from a hilum; side -1 for the image-left lung."""
    branches = []
    for _ in range(count):
        angle = np.deg2rad(rng.uniform(100, 260) if side < 0 else rng.uniform(-80, 80))
        point = np.array(hilum) + rng.normal(0, 0.01, 2)
        path = [point.copy()]
        length = rng.uniform(0.12, 0.30)
        for _ in range(4):
            angle += rng.normal(0, 0.25)
            point = point + length / 4 * np.array([np.cos(angle), np.sin(angle) * 1.2])
            path.append(point.copy())
        branches.append(np.array(path))
        fork = path[rng.integers(1, 3)]
        twig_angle = angle + rng.choice([-1, 1]) * rng.uniform(0.4, 0.9)
        twig = [fork, fork + 0.06 * np.array([np.cos(twig_angle), np.sin(twig_angle)])]
        branches.append(np.array(twig))
    return branches


def _ribs(side: int, offset: float):
    """Posterior (curving down laterally) and anterior rib centre lines for one side."""
    posterior, anterior = [], []
    t = np.linspace(0.0, 1.0, 24)
    for i in range(10):
        top = 0.11 + offset + i * 0.062
        u = 0.5 + side * (0.03 + 0.40 * t)
        posterior.append(np.stack([u, top - 0.025 * np.sin(np.pi * t * 0.7) + 0.10 * t**2], 1))
        if i < 6:
            anterior.append(np.stack([u, top + 0.16 - 0.09 * (1 - t) ** 1.5 + 0.02 * t], 1))
    return posterior, anterior


def render_chest(
    shape: tuple[int, int],
    rng: np.random.Generator,
    finding: str = "none",
    *,
    work_size: int = 768,
) -> Phantom:
    """Draw one synthetic PA chest radiograph of ``shape = (rows, cols)``.

    Args:
        shape: output size in pixels, rows x columns.
        rng: the source of all randomness.
        finding: one of :data:`FINDINGS`.
        work_size: the long side of the grid the anatomy is drawn on before resizing.
    """
    if finding not in FINDINGS:
        raise ValueError(f"unknown finding {finding!r}; expected one of {FINDINGS}")
    rows, cols = shape
    scale = min(1.0, work_size / max(rows, cols))
    canvas = _Canvas(max(int(round(rows * scale)), 16), max(int(round(cols * scale)), 16))
    u, v = canvas.u, canvas.v

    right_uv, left_uv = _jittered_lungs(rng)
    right, left = canvas.polygon(right_uv), canvas.polygon(left_uv)
    lungs = right | left
    body = canvas.ellipse((0.5, 0.60), (0.47 + rng.uniform(-0.02, 0.02), 0.62))
    body |= canvas.ellipse((0.5, 0.16), (0.49, 0.12))  # shoulders

    ctr = rng.uniform(0.58, 0.68) if finding == "chf" else rng.uniform(0.40, 0.48)
    thorax = left_uv[:, 0].max() - right_uv[:, 0].min()
    heart_axes = (ctr * thorax / 2, 0.10 + 0.10 * ctr)
    heart_center = (0.535 + rng.uniform(-0.01, 0.01), 0.70 - heart_axes[1] * 0.55)
    heart = canvas.ellipse(heart_center, heart_axes) & (v < 0.78)
    mediastinum = (np.abs(u - 0.5) < 0.065 + 0.02 * v) & (v < heart_center[1])
    aortic_knob = canvas.ellipse((0.56, 0.30), (0.035, 0.03))
    spine = np.abs(u - 0.5) < 0.04
    trachea = (np.abs(u - 0.5) < 0.012) & (v > 0.04) & (v < 0.33)

    hilum_r, hilum_l = np.array(_HILUM), np.array((1 - _HILUM[0], _HILUM[1] + 0.01))
    finding_mask = np.zeros_like(lungs)
    marked = lungs.copy()  # where vascular markings show
    image = 0.06 + canvas.soft(body, 0.01) * (0.40 + 0.22 * v)
    image -= canvas.soft(lungs, 0.006) * 0.30

    if finding == "pneumothorax":
        sides = [(right, right_uv, hilum_r), (left, left_uv, hilum_l)]
        collapsed_outlines = []
        chosen = [sides[rng.integers(2)]] if rng.random() < 0.85 else sides
        for lung, outline, hilum in chosen:
            shrink = rng.uniform(0.55, 0.80)
            collapsed_uv = hilum + shrink * (outline - hilum)
            rim = lung & ~canvas.polygon(collapsed_uv)
            if rng.random() < 0.3:  # apico-lateral only
                rim &= v < np.quantile(v[lung], rng.uniform(0.55, 0.8))
            finding_mask |= rim
            collapsed_outlines.append(np.vstack([collapsed_uv, collapsed_uv[:1]]))
        marked &= ~finding_mask
        image -= canvas.soft(finding_mask, 0.002) * 0.12
        pleura = canvas.lines(collapsed_outlines, 0.003) * lungs
        image += 0.10 * pleura

    vessel_width = 0.006 if finding == "chf" else 0.004
    trees = _vessel_tree(rng, hilum_r, -1, 14) + _vessel_tree(rng, hilum_l, 1, 14)
    image += 0.07 * canvas.soft(canvas.lines(trees, vessel_width) > 0, 0.002) * marked

    if finding == "chf":
        haze = sum(
            np.exp(-(((u - hu) / 0.11) ** 2 + ((v - hv) / 0.14) ** 2))
            for hu, hv in (hilum_r, hilum_l)
        )
        image += 0.14 * haze * lungs
        finding_mask = heart | ((haze > 0.5) & lungs)
    elif finding == "pneumonia":
        lung = (right, left)[rng.integers(2)]
        depth = cv2.distanceTransform(lung.astype(np.uint8), cv2.DIST_L2, 5)
        candidates = np.argwhere((depth > 0.05 * canvas.cols) & (v > 0.35) & ~heart)
        if len(candidates) == 0:
            candidates = np.argwhere(lung)
        cy, cx = candidates[rng.integers(len(candidates))]
        blob = np.zeros_like(image)
        for _ in range(rng.integers(3, 6)):
            by = cy / canvas.rows + rng.normal(0, 0.03)
            bx = cx / canvas.cols + rng.normal(0, 0.025)
            radius = rng.uniform(0.05, 0.08)  # a lobar patch, visible at the demo's 64 px
            blob += np.exp(-(((u - bx) ** 2 + ((v - by) * 0.85) ** 2) / (2 * radius**2)))
        blob = np.clip(blob, 0, 1) * lung
        image += 0.30 * blob
        finding_mask = (blob > 0.35) & lung

    image += 0.24 * canvas.soft(mediastinum | aortic_knob | heart, 0.004)
    image -= 0.10 * canvas.soft(trachea, 0.003)
    image += 0.08 * canvas.soft(spine, 0.004)
    offset = rng.uniform(-0.015, 0.015)
    rib_lines = []
    for side in (-1, 1):
        posterior, anterior = _ribs(side, offset)
        image += 0.035 * canvas.lines(anterior, 0.014) * body
        rib_lines += posterior
    image += 0.08 * canvas.soft(canvas.lines(rib_lines, 0.020) > 0, 0.002) * body
    clavicles = [np.array([(0.46, 0.15), (0.30, 0.12), (0.16, 0.10)])]
    clavicles.append(clavicles[0] * (-1, 1) + (1, 0))
    image += 0.12 * canvas.lines(clavicles, 0.018) * body
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), max(0.6 * canvas.cols / 768, 0.3))

    if (rows, cols) != (canvas.rows, canvas.cols):
        image = cv2.resize(image, (cols, rows), interpolation=cv2.INTER_LINEAR)
        lungs, finding_mask, heart = (
            cv2.resize(m.astype(np.uint8), (cols, rows), interpolation=cv2.INTER_NEAREST) > 0
            for m in (lungs, finding_mask, heart)
        )
    image = image + rng.normal(0.0, 0.012, image.shape).astype(np.float32)
    return Phantom(
        image=np.clip(image, 0.0, 1.0).astype(np.float32),
        lungs=lungs,
        finding=finding_mask,
        heart=heart,
    )
