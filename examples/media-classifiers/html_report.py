"""Ion module ``html-report``: publish the digit statistics as one self-contained page.

Subscribes to ``report.ready`` and raises ``report.published``.

Reads report.json and histogram.png from stats-reporter and writes report.html with the
chart embedded as a data URI (so the page needs no other file), a histogram table and
the metadata that travelled down the tree in the event data (seed, held-out accuracy).

Contract (2018 file contract, no Ion imports):
  in:  in/data/report.json and in/data/histogram.png (required), in/eventmeta.json
  out: out/data/report.html, out/insights.json, out/events/report-published.json
Config (environment): REPORT_TITLE.
"""

from __future__ import annotations

import base64
import html
import json
import os
import sys
from pathlib import Path

EVENT_TYPE = "report.published"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class InputError(Exception):
    """The triggering event's data or the module configuration is unusable."""


def read_eventmeta(base: Path) -> dict[str, str]:
    """Return in/eventmeta.json as a dict; the file is absent when the event had no data."""
    path = base / "in" / "eventmeta.json"
    if not path.exists():
        return {}
    try:
        pairs = json.loads(path.read_text(encoding="utf-8") or "[]")
        return {str(p["key"]): str(p["value"]) for p in pairs}
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{path} is not a JSON array of {{key, value}} pairs: {exc}") from exc


def write_pairs(path: Path, pairs: dict[str, str]) -> None:
    """Write a JSON array of {key, value} string pairs (insights or an event file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = [{"key": k, "value": v} for k, v in pairs.items()]
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")


def render(title: str, report: dict[str, object], chart_png: bytes, meta: dict[str, str]) -> str:
    """Build the HTML page; every value from the inputs is escaped."""
    esc = html.escape
    histogram = report.get("histogram")
    rows = "".join(
        f"<tr><td>{esc(str(d))}</td><td>{esc(str(c))}</td></tr>"
        for d, c in (histogram.items() if isinstance(histogram, dict) else [])
    )
    facts = {
        "images": report.get("images"),
        "confident": report.get("confident"),
        "most common digit": report.get("most_common"),
        "mean confidence": report.get("mean_confidence"),
        "batch accuracy": report.get("batch_accuracy"),
        "held-out accuracy": meta.get("heldout_accuracy", report.get("heldout_accuracy")),
        "seed": meta.get("seed", report.get("seed")),
    }
    items = "".join(
        f"<li>{esc(k)}: <b>{esc('n/a' if v is None else str(v))}</b></li>" for k, v in facts.items()
    )
    chart = base64.b64encode(chart_png).decode("ascii")
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title></head>\n<body style='font-family:sans-serif'>\n"
        f"<h1>{esc(title)}</h1>\n<ul>{items}</ul>\n"
        f"<img alt='histogram' src='data:image/png;base64,{chart}'>\n"
        f"<table border='1'><tr><th>digit</th><th>count</th></tr>{rows}</table>\n"
        "</body></html>\n"
    )


def run(base: Path) -> None:
    data_dir = base / "in" / "data"
    report_path, chart_path = data_dir / "report.json", data_dir / "histogram.png"
    for required in (report_path, chart_path):
        if not required.is_file():
            raise InputError(f"{required} is missing: expected stats-reporter's outputs")
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{report_path} is not JSON: {exc}") from exc
    if not isinstance(report, dict):
        raise InputError(f"{report_path} must hold a JSON object")
    chart = chart_path.read_bytes()
    if not chart.startswith(PNG_MAGIC):
        raise InputError(f"{chart_path} is not a PNG file")
    meta = read_eventmeta(base)
    title = os.environ.get("REPORT_TITLE", "Digits found in the batch")
    print(f"html-report: rendering '{title}' from report.json and a {len(chart)} B chart")

    page = render(title, report, chart, meta)
    out = base / "out" / "data"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(page, encoding="utf-8")
    write_pairs(
        base / "out" / "insights.json",
        {"html_bytes": str(len(page.encode("utf-8"))), "title": title},
    )
    event = {"eventType": EVENT_TYPE, "files": "report.html"}
    event.update({k: meta[k] for k in ("seed", "heldout_accuracy") if k in meta})
    write_pairs(base / "out" / "events" / "report-published.json", event)
    print(f"html-report: wrote report.html ({len(page)} chars), raised {EVENT_TYPE}")


def main() -> int:
    base = Path(os.environ.get("HANDLER_BASE_DIR", "/ion"))
    try:
        run(base)
    except InputError as exc:
        print(f"html-report: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
