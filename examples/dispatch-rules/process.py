"""Ion module ``transcode`` / ``summarise``: report what arrived (a stand-in for real work).

Contract (2018 file contract, no Ion imports):
  in:  in/data/* (the event's files)
  out: out/insights.json (``files`` and ``bytes`` received, ``role`` from the environment)
Config (environment): ROLE.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def main() -> None:
    """Count the input files and their bytes."""
    base = Path(os.environ.get("HANDLER_BASE_DIR", "/ion"))
    files = [p for p in (base / "in" / "data").rglob("*") if p.is_file()]
    insights = {
        "role": os.environ.get("ROLE", ""),
        "files": str(len(files)),
        "bytes": str(sum(p.stat().st_size for p in files)),
    }
    out = base / "out" / "insights.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([{"key": k, "value": v} for k, v in insights.items()]))


if __name__ == "__main__":
    main()
