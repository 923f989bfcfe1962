"""Structure the project promises: one-way package dependencies, self-contained product files,
and evaluation that counts only genuinely undefined metrics."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_cxrkit_imports_data_prep_only_in_its_command_line():
    """``data_prep`` uses ``cxrkit``; ``cxrkit`` outside ``cxrkit/cli`` never imports it."""
    offenders = []
    for path in sorted((ROOT / "cxrkit").rglob("*.py")):
        if "cli" in path.relative_to(ROOT / "cxrkit").parts[:1]:
            continue
        if any(name == "data_prep" or name.startswith("data_prep.")
               for name in _imports(path)):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
    uses = {name for path in (ROOT / "data_prep").rglob("*.py") for name in _imports(path)
            if name.startswith("cxrkit")}
    assert uses <= {"cxrkit", "cxrkit.errors", "cxrkit.files", "cxrkit.preprocessing"}, uses


def test_product_files_do_not_point_outside_the_repository():
    product = [ROOT / name for name in ("README.md", "setup.cfg", "pyproject.toml")]
    product += [p for folder in ("cxrkit", "data_prep", "docs", "benchmarks")
                for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".toml")]
    assert product
    assert [str(p.relative_to(ROOT)) for p in product if "../shared" in p.read_text()] == []


def test_per_image_counts_undefined_metrics_and_raises_wiring_errors():
    from cxrkit import metrics
    from cxrkit.recipes.evaluate import per_image, summarise

    gaze = np.random.default_rng(0).random((3, 8, 8, 1))
    pred = gaze.copy()
    pred[1] = 0.5  # a flat prediction: CC is undefined for that image only
    values = per_image(metrics.correlation_coefficient, pred, gaze)
    assert np.isnan(values[1]) and values[0] == pytest.approx(1.0)
    assert summarise(values) == {"mean": pytest.approx(values[[0, 2]].mean()),
                                 "std": pytest.approx(values[[0, 2]].std()), "undefined": 1}
    with pytest.raises(ValueError, match="differ in shape"):  # wiring errors propagate
        per_image(metrics.correlation_coefficient, pred[:, :4], gaze)
    with pytest.raises(ValueError, match="NaN"):
        per_image(metrics.kl_divergence, np.full_like(gaze, np.nan), gaze)
