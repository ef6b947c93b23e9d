"""Ion module ``thumbnailer``: thumbnails and a contact sheet for the ingested media.

Subscribes to ``media.ingested`` (beside ``digit-classifier``: a fan-out) and raises
``media.thumbnailed``.

Every image under in/data is shrunk to fit THUMB_SIZE pixels (aspect ratio kept) and
saved under out/data/thumbs/ with its relative path; all thumbnails are then laid out
on one captioned contact sheet. Files that are not images (e.g. manifest.json) are
skipped.

Contract (2018 file contract, no Ion imports):
  in:  in/data/**/*.png|jpg (required)
  out: out/data/thumbs/<input path>.png, out/data/contact-sheet.png, out/insights.json,
       out/events/media-thumbnailed.json
Config (environment): THUMB_SIZE, SHEET_COLUMNS.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw, UnidentifiedImageError

EVENT_TYPE = "media.thumbnailed"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
CAPTION_HEIGHT = 12
PAD = 4


class InputError(Exception):
    """The triggering event's data or the module configuration is unusable."""


def write_pairs(path: Path, pairs: dict[str, str]) -> None:
    """Write a JSON array of {key, value} string pairs (insights or an event file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = [{"key": k, "value": v} for k, v in pairs.items()]
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")


def int_setting(name: str, default: str, low: int, high: int) -> int:
    """Read an integer from the environment and check its range, naming it in the error."""
    raw = os.environ.get(name, default)
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise InputError(f"{name}={value} is outside [{low}, {high}]")
    return value


def contact_sheet(thumbs: list[tuple[str, Image.Image]], size: int, columns: int) -> Image.Image:
    """Lay thumbnails out in a grid, each centred in its cell above a short caption."""
    columns = min(columns, len(thumbs))
    rows = -(-len(thumbs) // columns)
    cell_w, cell_h = max(size, 60) + PAD, size + CAPTION_HEIGHT + PAD
    sheet = Image.new("RGB", (columns * cell_w + PAD, rows * cell_h + PAD), (32, 32, 36))
    draw = ImageDraw.Draw(sheet)
    for i, (name, thumb) in enumerate(thumbs):
        x0, y0 = PAD + (i % columns) * cell_w, PAD + (i // columns) * cell_h
        offset = ((cell_w - PAD - thumb.width) // 2, (size - thumb.height) // 2)
        sheet.paste(thumb.convert("RGB"), (x0 + offset[0], y0 + offset[1]))
        draw.text((x0, y0 + size + 1), Path(name).stem[:10], fill=(220, 220, 220))
    return sheet


def run(base: Path) -> None:
    started = time.perf_counter()
    size = int_setting("THUMB_SIZE", "32", 8, 512)
    columns = int_setting("SHEET_COLUMNS", "8", 1, 100)
    data_dir = base / "in" / "data"
    if not data_dir.is_dir():
        raise InputError(f"input directory {data_dir} does not exist: the parent passed no files")
    sources = sorted(
        p for p in data_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not sources:
        raise InputError(f"no .png/.jpg images under {data_dir}")
    print(f"thumbnailer: {len(sources)} images, thumbnails up to {size}px")

    out = base / "out" / "data"
    thumbs: list[tuple[str, Image.Image]] = []
    files: list[str] = []
    for path in sources:
        rel = path.relative_to(data_dir)
        try:
            with Image.open(path) as img:
                img.thumbnail((size, size), Image.Resampling.LANCZOS)
                thumb = img.copy()
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"cannot read image {path}: {exc}") from exc
        dest = Path("thumbs") / rel.with_suffix(".png")
        (out / dest).parent.mkdir(parents=True, exist_ok=True)
        thumb.save(out / dest)
        thumbs.append((rel.as_posix(), thumb))
        files.append(dest.as_posix())

    sheet = contact_sheet(thumbs, size, columns)
    sheet.save(out / "contact-sheet.png")
    bytes_in = sum(p.stat().st_size for p in sources)
    bytes_out = sum((out / f).stat().st_size for f in files)
    print(f"thumbnailer: contact sheet {sheet.width}x{sheet.height}, {bytes_in} -> {bytes_out} B")

    write_pairs(
        base / "out" / "insights.json",
        {
            "thumbnails": str(len(files)),
            "thumb_size": str(size),
            "contact_sheet": f"{sheet.width}x{sheet.height}",
            "bytes_in": str(bytes_in),
            "bytes_out": str(bytes_out),
            "size_ratio": f"{bytes_out / bytes_in:.3f}",
            "seconds": f"{time.perf_counter() - started:.3f}",
        },
    )
    write_pairs(
        base / "out" / "events" / "media-thumbnailed.json",
        {
            "eventType": EVENT_TYPE,
            "files": ",".join(["contact-sheet.png", *files]),
            "thumbnails": str(len(files)),
        },
    )
    print(f"thumbnailer: raised {EVENT_TYPE}")


def main() -> int:
    base = Path(os.environ.get("HANDLER_BASE_DIR", "/ion"))
    try:
        run(base)
    except InputError as exc:
        print(f"thumbnailer: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
