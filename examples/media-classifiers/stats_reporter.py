"""Ion module ``stats-reporter``: summarise what the digit classifier found.

Subscribes to ``digits.classified`` and raises ``report.ready``.

Reads the classifier's labels.json, counts the confident predictions per digit,
measures confidence and (when the batch carried ground truth) accuracy, and draws the
histogram as a PNG bar chart with Pillow.

Contract (2018 file contract, no Ion imports):
  in:  in/data/labels.json (required), in/eventmeta.json (``heldout_accuracy`` and
       ``seed`` are passed on if present)
  out: out/data/report.json, out/data/histogram.png, out/insights.json,
       out/events/report-ready.json
Config (environment): CHART_WIDTH, CHART_HEIGHT.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

EVENT_TYPE = "report.ready"
PASSED_ON = ("heldout_accuracy", "seed")


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


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """Load and check the classifier's labels.json."""
    if not path.is_file():
        raise InputError(f"{path} is missing: expected the digit classifier's labels.json")
    try:
        predictions = json.loads(path.read_text(encoding="utf-8"))["predictions"]
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{path} is not a labels.json from digit-classifier: {exc!r}") from exc
    fields = {"file": str, "label": int, "confidence": float, "confident": bool}
    for p in predictions:
        if not isinstance(p, dict) or not all(isinstance(p.get(k), t) for k, t in fields.items()):
            raise InputError(f"{path}: prediction {p!r} lacks one of {sorted(fields)}")
    return list(predictions)


def bar_chart(counts: list[int], width: int, height: int) -> Image.Image:
    """Draw counts for digits 0..9 as labelled vertical bars."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    left, bottom, top = 10, height - 18, 16
    slot = (width - 2 * left) / len(counts)
    peak = max(max(counts), 1)
    draw.text((left, 2), "confident predictions per digit", fill=(40, 40, 40))
    draw.line((left, bottom, width - left, bottom), fill=(120, 120, 120))
    for digit, count in enumerate(counts):
        x0 = left + digit * slot + slot * 0.15
        x1 = left + (digit + 1) * slot - slot * 0.15
        y0 = bottom - (bottom - top - 12) * count / peak
        if count:
            draw.rectangle((x0, y0, x1, bottom - 1), fill=(52, 101, 164))
            label = str(count)
            draw.text(((x0 + x1 - draw.textlength(label)) / 2, y0 - 12), label, fill=(40, 40, 40))
        label = str(digit)
        draw.text(((x0 + x1 - draw.textlength(label)) / 2, bottom + 3), label, fill=(40, 40, 40))
    return img


def run(base: Path) -> None:
    started = time.perf_counter()
    try:
        width = int(os.environ.get("CHART_WIDTH", "320"))
        height = int(os.environ.get("CHART_HEIGHT", "180"))
    except ValueError as exc:
        raise InputError(f"CHART_WIDTH/CHART_HEIGHT must be integers: {exc}") from None
    if not (120 <= width <= 4000 and 80 <= height <= 4000):
        raise InputError(f"chart size {width}x{height} is outside 120x80..4000x4000")
    meta = read_eventmeta(base)
    predictions = read_predictions(base / "in" / "data" / "labels.json")
    confident = [p for p in predictions if p["confident"]]
    print(f"stats-reporter: {len(predictions)} predictions, {len(confident)} confident")

    per_digit = Counter(int(p["label"]) for p in confident)
    counts = [per_digit.get(d, 0) for d in range(10)]
    scored = [p for p in predictions if p.get("truth") is not None]
    mean_conf = sum(float(p["confidence"]) for p in confident) / len(confident) if confident else 0
    report: dict[str, Any] = {
        "images": len(predictions),
        "confident": len(confident),
        "rejected": [p["file"] for p in predictions if not p["confident"]],
        "histogram": {str(d): c for d, c in enumerate(counts)},
        "most_common": per_digit.most_common(1)[0][0] if per_digit else None,
        "even": sum(c for d, c in enumerate(counts) if d % 2 == 0),
        "odd": sum(c for d, c in enumerate(counts) if d % 2 == 1),
        "mean_confidence": round(mean_conf, 4),
        "batch_accuracy": (
            round(sum(p["label"] == p["truth"] for p in scored) / len(scored), 4)
            if scored
            else None
        ),
    }
    report.update({k: meta[k] for k in PASSED_ON if k in meta})

    out = base / "out" / "data"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    bar_chart(counts, width, height).save(out / "histogram.png")
    print("stats-reporter: histogram " + " ".join(f"{d}:{c}" for d, c in enumerate(counts)))

    write_pairs(
        base / "out" / "insights.json",
        {
            "confident": str(len(confident)),
            "histogram": ",".join(map(str, counts)),
            "most_common": str(report["most_common"]),
            "mean_confidence": f"{mean_conf:.4f}",
            "batch_accuracy": str(report["batch_accuracy"]),
            "seconds": f"{time.perf_counter() - started:.3f}",
        },
    )
    event = {"eventType": EVENT_TYPE, "files": "report.json,histogram.png"}
    event.update({k: meta[k] for k in PASSED_ON if k in meta})
    write_pairs(base / "out" / "events" / "report-ready.json", event)
    print(f"stats-reporter: raised {EVENT_TYPE}")


def main() -> int:
    base = Path(os.environ.get("HANDLER_BASE_DIR", "/ion"))
    try:
        run(base)
    except InputError as exc:
        print(f"stats-reporter: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
