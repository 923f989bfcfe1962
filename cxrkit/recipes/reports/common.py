"""What every report layout shares: the Markdown frame and the trace summary."""

from __future__ import annotations

from pathlib import Path


def trace_summary(trace: dict) -> dict:
    """The part of a run's trace that goes into ``metrics.json``."""
    return {k: trace[k] for k in ("seed", "data_manifest_sha256", "versions")}


def write_markdown(out: Path, title: str, body: list[str], *, demo_note: str | None,
                   trace: dict) -> None:
    """``report.md``: the title, the demo warning first and last, the body, the trace."""
    warning = [f"> **{demo_note}**", ""] if demo_note else []
    lines = [f"# {title}", "", *warning, *body,
             "## Trace", "", f"- seed {trace['seed']}; data manifest sha256 "
             f"`{trace['data_manifest_sha256']}`",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in trace["versions"].items()),
             "- the resolved recipe: `run.json`", "", *warning]
    (out / "report.md").write_text("\n".join(lines))
