"""Ion module ``ingest``: make a video, a note and a photo, one ``media.ingested`` event each.

The dispatch-rules example's first module. Each event carries one file and its ``mime`` type,
so the next modules' ``when:`` and ``routes:`` rules have something to decide on.

Contract (2018 file contract, no Ion imports):
  in:  in/eventmeta.json (``video_kib``: the video's size in KiB, default 2048)
  out: out/data/{clip.mp4,notes.txt,photo.png}, out/events/{0,1,2}.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FILES = (
    ("clip.mp4", "video/mp4"),
    ("notes.txt", "text/plain"),
    ("photo.png", "image/png"),
)


def read_eventmeta(base: Path) -> dict[str, str]:
    """Return in/eventmeta.json as a dict (absent when the event had no data)."""
    path = base / "in" / "eventmeta.json"
    if not path.exists():
        return {}
    return {str(p["key"]): str(p["value"]) for p in json.loads(path.read_text() or "[]")}


def write_pairs(path: Path, pairs: dict[str, str]) -> None:
    """Write a JSON array of {key, value} string pairs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"key": k, "value": v} for k, v in pairs.items()]))


def main() -> None:
    """Write the three files and one event per file."""
    base = Path(os.environ.get("HANDLER_BASE_DIR", "/ion"))
    video_kib = int(read_eventmeta(base).get("video_kib", "2048"))
    data = base / "out" / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "clip.mp4").write_bytes(b"\0" * (video_kib * 1024))
    (data / "notes.txt").write_text("a short note\n")
    (data / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    for i, (name, mime) in enumerate(FILES):
        write_pairs(
            base / "out" / "events" / f"{i}.json",
            {"eventType": "media.ingested", "files": name, "mime": mime},
        )
    write_pairs(base / "out" / "insights.json", {"files": str(len(FILES))})


if __name__ == "__main__":
    main()
