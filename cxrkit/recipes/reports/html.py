"""``report.html``: the run report as one self-contained page, readable offline.

The page holds what ``report.md`` holds (converted from the small Markdown subset the reports
write: headings, paragraphs, bullet lists, quotes, tables, inline code, and ``![caption](file)``
figure lines, whose PNG is inlined as base64), and a per-case gallery: one card per test case
with its image tiles, true and predicted class and its numbers. Tiles are at most
:data:`TILE_SIDE` pixels (JPEG above 96 px, PNG below), so a 100-case report of 640 x 512
images stays a few megabytes. The gallery sorts by any of the numbers (ascending or
descending) and filters by true class, with a few lines of plain JavaScript; nothing is
fetched from anywhere.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


@dataclass
class Case:
    """One gallery card: ``tiles`` (column title -> uint8 RGB array), the true ``label``, the
    ``predicted`` class (or None) and ``numbers`` (name -> value; NaN shows as "n/a")."""

    name: str
    label: str
    predicted: str | None
    tiles: dict[str, np.ndarray]
    numbers: dict[str, float] = field(default_factory=dict)


TILE_SIDE = 224


def overlay_tile(image: np.ndarray, heat: np.ndarray | None) -> np.ndarray:
    """A gallery tile: the grayscale image, with ``heat`` (in [0, 1]) overlaid when given,
    area-shrunk to at most :data:`TILE_SIDE` pixels a side; uint8 RGB."""
    from cxrkit.explain.overlay import overlay, to_gray_uint8

    tile = (np.repeat(to_gray_uint8(image)[..., None], 3, axis=-1) if heat is None
            else overlay(image, heat))
    scale = TILE_SIDE / max(tile.shape[:2])
    if scale < 1:
        size = (max(1, round(tile.shape[1] * scale)), max(1, round(tile.shape[0] * scale)))
        tile = cv2.resize(tile, size, interpolation=cv2.INTER_AREA)
    return tile


def tile_data_uri(rgb: np.ndarray) -> str:
    """A uint8 RGB tile as a data URI: PNG up to 96 px a side, JPEG (quality 85) above."""
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    kind = "png" if max(rgb.shape[:2]) <= 96 else "jpeg"
    params = [cv2.IMWRITE_JPEG_QUALITY, 85] if kind == "jpeg" else []
    ok, encoded = cv2.imencode(f".{kind}", image, params)
    if not ok:
        raise ValueError(f"could not encode a gallery tile as {kind.upper()}")
    return f"data:image/{kind};base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _figure(caption: str, path: Path) -> str:
    if not path.is_file():
        return f"<p>(figure missing: <code>{html.escape(path.name)}</code>)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_inline(caption)}</figcaption></figure>")


def _inline(text: str) -> str:
    """Escapes ``text`` and renders `code` and **bold** spans."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _table(lines: list[str]) -> str:
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    head, body = cells[0], cells[2:]
    rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                   for r in body)
    return ("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head)
            + f"</tr></thead><tbody>{rows}</tbody></table>")


def markdown_to_html(markdown: str, folder: Path) -> str:
    """The Markdown subset the reports write, as HTML; figure paths are relative to
    ``folder``."""
    parts, lines, i = [], markdown.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            parts.append(_table(block))
            continue
        if line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            parts.append("<ul>" + "".join(items) + "</ul>")
            continue
        heading = re.match(r"(#{1,4}) (.*)", line)
        image = re.fullmatch(r"!\[(.*)\]\((.*)\)", line.strip())
        if image:
            parts.append(_figure(image.group(1), folder / image.group(2)))
        elif heading:
            level = len(heading.group(1))
            parts.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.startswith("> "):
            parts.append(f'<p class="warning">{_inline(line[2:])}</p>')
        elif line.strip():
            parts.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(parts)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f0f0f0; }
code { background: #f4f4f4; padding: 0 0.2em; }
.warning { background: #fff3cd; border: 1px solid #e0c060; padding: 0.6em; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #ddd; }
#controls { margin: 0.5em 0 1em; display: flex; gap: 1.5em; flex-wrap: wrap; }
#gallery { display: flex; flex-direction: column; gap: 0.8em; }
.case { border: 1px solid #ccc; border-radius: 4px; padding: 0.5em; }
.case.wrong { border-color: #d33; }
.case h3 { margin: 0 0 0.3em; font-size: 0.95em; }
.tiles { display: flex; gap: 0.4em; flex-wrap: wrap; }
.tiles figure { margin: 0; text-align: center; font-size: 0.8em; }
.tiles img { width: 160px; height: auto; image-rendering: pixelated; }
.numbers { font-size: 0.85em; margin-top: 0.3em; }
"""

SCRIPT = """
(function () {
  var gallery = document.getElementById('gallery');
  if (!gallery) { return; }
  var sort = document.getElementById('sort'), order = document.getElementById('order');
  var filter = document.getElementById('filter'), shown = document.getElementById('shown');
  function value(card) {
    var v = parseFloat(card.getAttribute('data-k' + sort.value));
    return isNaN(v) ? Infinity : v;
  }
  function update() {
    var cards = Array.prototype.slice.call(gallery.children);
    var sign = order.value === 'desc' ? -1 : 1;
    cards.sort(function (a, b) {
      var x = value(a), y = value(b);
      if (x === y) { return 0; }
      if (x === Infinity) { return 1; }
      if (y === Infinity) { return -1; }
      return sign * (x - y);
    });
    var count = 0;
    cards.forEach(function (card) {
      var keep = !filter.value || card.getAttribute('data-label') === filter.value;
      card.style.display = keep ? '' : 'none';
      count += keep ? 1 : 0;
      gallery.appendChild(card);
    });
    shown.textContent = count + ' of ' + cards.length + ' cases shown';
  }
  [sort, order, filter].forEach(function (el) { el.addEventListener('change', update); });
  update();
})();
"""


def case_name(test: dict, index: int) -> str:
    """A gallery card's name: the test image's id, or its position when ids are absent."""
    return test["image_id"][index].decode() if "image_id" in test else f"test image {index}"


def _number(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def gallery_html(cases: list[Case], classes: list[str], note: str = "") -> str:
    """The gallery section: controls, then one card per case (the sort keys are the union of
    the cases' numbers, in first-seen order)."""
    keys = list(dict.fromkeys(k for case in cases for k in case.numbers))
    options = "".join(f'<option value="{i}">{html.escape(k)}</option>'
                      for i, k in enumerate(keys))
    classes_html = "".join(f'<option value="{html.escape(c)}">{html.escape(c)}</option>'
                           for c in classes)
    cards = []
    for case in cases:
        attributes = " ".join(
            f'data-k{i}="{case.numbers[k]:.6g}"' for i, k in enumerate(keys)
            if k in case.numbers and case.numbers[k] is not None
            and np.isfinite(case.numbers[k]))
        tiles = "".join(f'<figure><img alt="{html.escape(title)}" src="{tile_data_uri(tile)}">'
                        f"<figcaption>{html.escape(title)}</figcaption></figure>"
                        for title, tile in case.tiles.items())
        numbers = "; ".join(f"{html.escape(k)} {_number(v)}" for k, v in case.numbers.items())
        verdict = ("" if case.predicted is None else
                   f" — predicted <strong>{html.escape(case.predicted)}</strong>")
        wrong = case.predicted is not None and case.predicted != case.label
        cards.append(
            f'<div class="case{" wrong" if wrong else ""}" data-label="{html.escape(case.label)}"'
            f' {attributes}><h3>{html.escape(case.name)}: true <strong>'
            f"{html.escape(case.label)}</strong>{verdict}</h3>"
            f'<div class="tiles">{tiles}</div><div class="numbers">{numbers}</div></div>')
    return (f"<h2 id=\"cases\">Cases</h2><p>{html.escape(note)}</p>"
            '<div id="controls"><label>Sort by <select id="sort">' + options + "</select>"
            '</label><label>Order <select id="order"><option value="asc">ascending</option>'
            '<option value="desc">descending</option></select></label>'
            '<label>True class <select id="filter"><option value="">all</option>'
            + classes_html + '</select></label><span id="shown"></span></div>'
            '<div id="gallery">' + "".join(cards) + "</div>")


def write_html(out: Path, title: str, markdown: str, *, gallery: str = "") -> Path:
    """Writes ``out/report.html`` from the report's Markdown (figures relative to ``out``)
    and the gallery section (:func:`gallery_html`), placed before the trace."""
    head, _, trace = markdown.partition("\n## Trace\n")
    body = markdown_to_html(head, out) + gallery + (
        markdown_to_html("## Trace\n" + trace, out) if trace else "")
    page = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            f"{body}<script>{SCRIPT}</script></body></html>")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
