"""What every report layout shares: the page frame (``report.md`` and ``report.html``) and the
trace summary."""

from __future__ import annotations

from pathlib import Path

from cxrkit.recipes.reports.html import write_html


def trace_summary(trace: dict) -> dict:
    """The part of a run's trace that goes into ``metrics.json``."""
    return {k: trace[k] for k in ("seed", "data_manifest_sha256", "versions")}


def write_pages(out: Path, title: str, body: list[str], *, demo_note: str | None,
                trace: dict, gallery: str = "") -> None:
    """``report.md``: the title, the demo warning first and last, the body, the trace; and
    ``report.html``: the same page with the figures inlined and the case ``gallery``
    (:func:`cxrkit.recipes.reports.html.gallery_html`) before the trace."""
    warning = [f"> **{demo_note}**", ""] if demo_note else []
    lines = [f"# {title}", "", *warning, *body,
             "## Trace", "", f"- seed {trace['seed']}; data manifest sha256 "
             f"`{trace['data_manifest_sha256']}`",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in trace["versions"].items()),
             "- the resolved recipe: `run.json`", "", *warning]
    (out / "report.md").write_text("\n".join(lines))
    write_html(out, title, "\n".join(lines), gallery=gallery)
