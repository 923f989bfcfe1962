"""report.html: the Markdown it converts, the gallery it builds, and the page in a real browser."""

from __future__ import annotations

import numpy as np
from browser import inspect_page, screenshot

from cxrkit.figures import roc_figure, save_figure
from cxrkit.recipes.reports.common import write_pages
from cxrkit.recipes.reports.html import Case, gallery_html, markdown_to_html

TRACE = {"seed": 0, "data_manifest_sha256": "ab" * 32, "versions": {"cxrkit": "0"}}


def test_markdown_subset_becomes_html(tmp_path):
    save_figure(roc_figure({"a": (np.array([0, 1]), np.array([0, 1]))}, title="t"),
                tmp_path / "roc.png")
    page = markdown_to_html("# Title\n\n> **demo <data>**\n\n- `x` one\n- two\n\n"
                            "| Model | AUC |\n|---|---|\n| ours | 0.9000 |\n\n"
                            "![ROC curves](roc.png)\n![gone](missing.png)", tmp_path)
    assert "<h1>Title</h1>" in page
    assert '<p class="warning"><strong>demo &lt;data&gt;</strong></p>' in page
    assert "<ul><li><code>x</code> one</li><li>two</li></ul>" in page
    assert ("<table><thead><tr><th>Model</th><th>AUC</th></tr></thead><tbody><tr><td>ours</td>"
            "<td>0.9000</td></tr></tbody></table>") in page
    assert '<img alt="ROC curves" src="data:image/png;base64,iVBOR' in page
    assert "figure missing: <code>missing.png</code>" in page


def _cases() -> list[Case]:
    rng = np.random.default_rng(0)
    tile = lambda: rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)  # noqa: E731
    labels = ["Normal", "CHF", "pneumonia", "CHF", "Normal"]
    kls = [0.5, 0.1, float("nan"), 0.3, 0.2]
    return [Case(f"case{i}", label, "CHF", {"image": tile(), "gaze": tile()},
                 {"KL ours": kl, "P(CHF)": 0.1 * i})
            for i, (label, kl) in enumerate(zip(labels, kls, strict=True))]


def test_gallery_cards_carry_their_class_and_sort_keys():
    page = gallery_html(_cases(), ["Normal", "CHF", "pneumonia"])
    assert page.count('class="case') == 5 and page.count('class="case wrong"') == 3
    assert '<option value="0">KL ours</option><option value="1">P(CHF)</option>' in page
    assert 'data-label="pneumonia" data-k1="0.2"' in page  # the NaN KL has no sort key
    assert "KL ours n/a" in page


def test_report_page_in_a_real_browser(tmp_path):
    """Every image decodes, no console error, the class filter shows exactly that class and
    the sort orders the cards (NaN last); a screenshot is taken."""
    save_figure(roc_figure({"a": (np.array([0, 1]), np.array([0, 1]))}, title="t"),
                tmp_path / "roc.png")
    write_pages(tmp_path, "demo — run report", ["## Figures", "", "![ROC](roc.png)", ""],
                demo_note="SYNTHETIC", trace=TRACE,
                gallery=gallery_html(_cases(), ["Normal", "CHF", "pneumonia"]))
    assert (tmp_path / "report.md").read_text().count("SYNTHETIC") == 2
    seen = inspect_page(tmp_path / "report.html", tmp_path)
    assert seen["images"] == 11 and seen["undecoded"] == [], seen  # ROC + 5 cards x 2 tiles
    assert seen["errors"] == [] and seen["console"] == []
    assert seen["filters"][""] == ["CHF", "Normal", "CHF", "Normal", "pneumonia"]  # by KL
    assert seen["filters"]["CHF"] == ["CHF", "CHF"]
    assert seen["filters"]["pneumonia"] == ["pneumonia"]
    assert seen["sort_key"] == "KL ours"
    assert seen["sorted"]["asc"] == ["0.1", "0.2", "0.3", "0.5", None]
    assert seen["sorted"]["desc"] == ["0.5", "0.3", "0.2", "0.1", None]
    shot = screenshot(tmp_path / "report.html", tmp_path / "shot.png")
    assert shot.read_bytes()[:4] == b"\x89PNG"
