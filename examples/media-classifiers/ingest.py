"""Ion module ``ingest``: synthesise a batch of media for the rest of the tree.

Subscribes to ``media.submitted`` (the root event) and raises ``media.ingested``.

It renders ``count`` handwritten digits taken from scikit-learn's bundled digits
dataset (8x8 scans shipped inside the package, so nothing is downloaded), upscaled
to PNGs with a little random rotation, shift and paper noise, plus a few
"photographs" drawn with numpy (sky gradient, sun, hills, grain). Every choice comes
from one ``seed``, so the batch is byte-for-byte reproducible.

Contract (2018 file contract, no Ion imports):
  in:  $HANDLER_BASE_DIR/in/eventmeta.json  keys ``count`` and ``seed`` (optional)
  out: out/data/images/{digits,photos}/*.png, out/data/manifest.json (ground truth),
       out/insights.json, out/events/media-ingested.json
Config (environment): INGEST_DEFAULT_COUNT, INGEST_DEFAULT_SEED, INGEST_MAX_COUNT,
  INGEST_PHOTOS, INGEST_IMAGE_SIZE.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

EVENT_TYPE = "media.ingested"


class InputError(Exception):
    """The triggering event or the module configuration is unusable."""


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


def load_digit_scans() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's bundled digits as (images (n, 8, 8), labels (n,)).

    Reads the CSV shipped inside the installed package directly: importing scikit-learn
    costs about a second and a half, ten times this whole module's work. Falls back to
    ``load_digits`` if the package lays its data out differently.
    """
    spec = importlib.util.find_spec("sklearn")
    roots = spec.submodule_search_locations if spec else None
    csv = Path(next(iter(roots or [""]))) / "datasets" / "data" / "digits.csv.gz"
    if roots and csv.is_file():
        table = np.loadtxt(csv, delimiter=",")
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
    from sklearn.datasets import load_digits  # slow import: only on the fallback path

    bunch = load_digits()
    return bunch.images, bunch.target


def int_setting(name: str, raw: str, low: int, high: int) -> int:
    """Parse an integer setting and check its range, naming it in the error."""
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise InputError(f"{name}={value} is outside [{low}, {high}]")
    return value


def render_digit(pixels: np.ndarray, size: int, rng: np.random.Generator) -> Image.Image:
    """Upscale an 8x8 digit (0..16, ink high) to dark ink on light paper, jittered."""
    ink = Image.fromarray((pixels * (255.0 / 16.0)).astype(np.uint8), mode="L")
    ink = ink.resize((size, size), Image.Resampling.BICUBIC)
    ink = ink.rotate(float(rng.uniform(-6, 6)), resample=Image.Resampling.BILINEAR)
    dx, dy = (int(v) for v in rng.integers(-size // 32, size // 32 + 1, size=2))
    ink = ink.transform(ink.size, Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy))
    paper = 235.0 - np.asarray(ink, dtype=np.float64) * 0.85 + rng.normal(0, 6, (size, size))
    return Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8), mode="L")


def render_photo(size: int, rng: np.random.Generator) -> Image.Image:
    """Draw a small landscape: sky gradient, a sun, rolling hills and film grain."""
    rows = np.linspace(0.0, 1.0, size)[:, None, None]
    top = rng.uniform((20, 60, 140), (80, 130, 220))
    bottom = rng.uniform((170, 190, 210), (230, 240, 255))
    sky = np.broadcast_to(top + (bottom - top) * rows, (size, size, 3))
    img = Image.fromarray(sky.astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(img)
    cx, cy = int(rng.integers(size // 5, 4 * size // 5)), int(rng.integers(4, size // 3))
    r = size // 8
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 220, 90))
    xs = np.arange(size)
    phase, height = rng.uniform(0, 2 * np.pi), rng.uniform(0.55, 0.75) * size
    ridge = height + size / 10 * np.sin(xs / size * 2 * np.pi * rng.uniform(1, 2) + phase)
    green = tuple(int(v) for v in rng.integers(40, 140, 3) * np.array([0.5, 1.0, 0.4]))
    draw.polygon(
        [(0, size), *zip(xs.tolist(), ridge.tolist(), strict=True), (size, size)], fill=green
    )
    grain = np.asarray(img, dtype=np.float64) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(grain, 0, 255).astype(np.uint8), mode="RGB")


def run(base: Path) -> None:
    started = time.perf_counter()
    meta = read_eventmeta(base)
    env = os.environ
    max_count = int_setting("INGEST_MAX_COUNT", env.get("INGEST_MAX_COUNT", "200"), 1, 10_000)
    count = int_setting(
        "count", meta.get("count", env.get("INGEST_DEFAULT_COUNT", "12")), 1, max_count
    )
    seed = int_setting("seed", meta.get("seed", env.get("INGEST_DEFAULT_SEED", "7")), 0, 2**32 - 1)
    photos = int_setting("INGEST_PHOTOS", env.get("INGEST_PHOTOS", "2"), 0, 100)
    size = int_setting("INGEST_IMAGE_SIZE", env.get("INGEST_IMAGE_SIZE", "64"), 16, 512)
    print(f"ingest: count={count} photos={photos} seed={seed} size={size}px")

    rng = np.random.default_rng(seed)
    images, targets = load_digit_scans()
    picks = rng.choice(len(targets), size=count, replace=False)
    out = base / "out" / "data"
    manifest: list[dict[str, object]] = []
    for i, index in enumerate(picks.tolist()):
        rel = f"images/digits/digit-{i:03d}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        render_digit(images[index], size, rng).save(out / rel, optimize=False)
        manifest.append(
            {"file": rel, "kind": "digit", "label": int(targets[index]), "source_index": index}
        )
    for i in range(photos):
        rel = f"images/photos/photo-{i:03d}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        render_photo(size, rng).save(out / rel)
        manifest.append({"file": rel, "kind": "photo", "label": None, "source_index": None})
    print(f"ingest: rendered {count} digits and {photos} photos under out/data/images/")

    (out / "manifest.json").write_text(
        json.dumps({"seed": seed, "images": manifest}, indent=2) + "\n", encoding="utf-8"
    )
    files = [str(m["file"]) for m in manifest]
    total_bytes = sum((out / f).stat().st_size for f in files)
    labels = [str(m["label"]) for m in manifest if m["kind"] == "digit"]
    write_pairs(
        base / "out" / "insights.json",
        {
            "digits": str(count),
            "photos": str(photos),
            "seed": str(seed),
            "image_size": f"{size}x{size}",
            "bytes_written": str(total_bytes),
            "true_labels": ",".join(labels),
            "seconds": f"{time.perf_counter() - started:.3f}",
        },
    )
    write_pairs(
        base / "out" / "events" / "media-ingested.json",
        {
            "eventType": EVENT_TYPE,
            "files": ",".join([*files, "manifest.json"]),
            "seed": str(seed),
            "count": str(len(files)),
        },
    )
    print(f"ingest: raised {EVENT_TYPE} with {len(files) + 1} files ({total_bytes} bytes of PNG)")


def main() -> int:
    base = Path(os.environ.get("HANDLER_BASE_DIR", "/ion"))
    try:
        run(base)
    except InputError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
