"""A headless Chromium that opens a report page and reports what a reader would see.

:func:`inspect_page` loads a copy of the page with two probes added (one first in ``<head>``
that records uncaught errors and ``console.error`` calls, one last that runs after ``load``),
dumps the DOM and returns the probe's findings: images and the ones that did not decode, the
recorded errors, the number of gallery cards shown for each class filter, and whether sorting
by the first key orders the cards. Chromium's own stderr is also searched for console errors.
Tests skip when no Chromium is installed, unless ``CXRKIT_REQUIRE_BROWSER=1`` (``.ci/run``
sets it after installing Debian's ``chromium``).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

FIRST = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
(function () {
  var original = console.error;
  console.error = function () {
    window.__errors.push(Array.prototype.join.call(arguments, ' '));
    original.apply(console, arguments);
  };
})();
</script>"""

LAST = """<script>
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var out = {images: images.length, undecoded: images.filter(function (i) {
    return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.alt; })};
  var cards = function () {
    return Array.prototype.slice.call(document.querySelectorAll('#gallery .case'));
  };
  var shown = function () {
    return cards().filter(function (c) { return c.style.display !== 'none'; });
  };
  out.cards = cards().length;
  out.filters = {};
  var filter = document.getElementById('filter');
  if (filter) {
    Array.prototype.slice.call(filter.options).forEach(function (option) {
      filter.value = option.value;
      filter.dispatchEvent(new Event('change'));
      out.filters[option.value] = shown().map(function (c) {
        return c.getAttribute('data-label'); });
    });
    filter.value = '';
    filter.dispatchEvent(new Event('change'));
    var sort = document.getElementById('sort'), order = document.getElementById('order');
    out.sorted = {};
    ['asc', 'desc'].forEach(function (direction) {
      sort.value = '0';
      order.value = direction;
      order.dispatchEvent(new Event('change'));
      out.sorted[direction] = shown().map(function (c) {
        return c.getAttribute('data-k0'); });
    });
    out.sort_key = sort.options.length ? sort.options[0].text : null;
  }
  out.errors = window.__errors;
  var pre = document.createElement('pre');
  pre.id = '__probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    """The Chromium executable; skips (or fails under CXRKIT_REQUIRE_BROWSER=1) without one."""
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                  if shutil.which(n)), None)
    if found is None:
        if os.environ.get("CXRKIT_REQUIRE_BROWSER") == "1":
            pytest.fail("no Chromium found, but CXRKIT_REQUIRE_BROWSER=1")
        pytest.skip("no Chromium installed (apt-get install chromium)")
    return found


def _run(args: list[str]) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([chromium(), *flags, *args], capture_output=True, text=True,
                          timeout=120)


def inspect_page(page: Path, work: Path) -> dict:
    """The probe's findings for ``page`` (see the module docstring), plus ``console``: the
    error lines Chromium printed for the page."""
    text = page.read_text(encoding="utf-8")
    probed = text.replace("<head>", "<head>" + FIRST, 1).replace("</body>", LAST + "</body>", 1)
    copy = work / f"probed-{page.name}"
    copy.write_text(probed, encoding="utf-8")
    result = _run(["--virtual-time-budget=10000", "--dump-dom", copy.as_uri()])
    found = re.search(r'<pre id="__probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the probe did not run: {result.stderr[-2000:]}"
    findings = json.loads(html.unescape(found.group(1)))
    findings["console"] = [line for line in result.stderr.splitlines()
                           if "CONSOLE" in line and ("rror" in line or "Uncaught" in line)]
    return findings


def screenshot(page: Path, png: Path, size: str = "1280,1600") -> Path:
    """A PNG screenshot of ``page`` at ``size`` (width,height) pixels."""
    result = _run([f"--window-size={size}", f"--screenshot={png}", page.as_uri()])
    assert png.is_file(), result.stderr[-2000:]
    return png
