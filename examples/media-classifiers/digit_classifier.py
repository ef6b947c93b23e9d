"""Ion module ``digit-classifier``: recognise handwritten digits in the ingested media.

Subscribes to ``media.ingested`` and raises ``digits.classified``.

At start-up it trains a support-vector classifier (with calibrated probabilities) on
scikit-learn's bundled 8x8 digits, keeping a stratified held-out split to measure its
accuracy, and a nearest-neighbour index of the training scans to spot inputs that look
nothing like a digit. Each input image is then reduced to the same 8x8 ink map and
classified. An image counts as *confident* when the top class probability reaches
CLASSIFIER_MIN_CONFIDENCE and it is not out of distribution (its distance to the nearest
training scan is within CLASSIFIER_OOD_FACTOR times the held-out 99th percentile).

Contract (2018 file contract, no Ion imports):
  in:  in/data/**/*.png|jpg (required), in/data/manifest.json (optional ground truth),
       in/eventmeta.json (``seed`` is passed on if present)
  out: out/data/labels.json, out/data/by-label/<digit>/<file name> for confident images,
       out/insights.json, out/events/digits-classified.json
Config (environment): CLASSIFIER_MIN_CONFIDENCE, CLASSIFIER_OOD_FACTOR,
  CLASSIFIER_TEST_FRACTION, CLASSIFIER_SPLIT_SEED, CLASSIFIER_MIN_HELDOUT_ACCURACY.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

EVENT_TYPE = "digits.classified"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class InputError(Exception):
    """The triggering event's data or the module configuration is unusable."""


class QualityError(Exception):
    """The freshly trained model is not good enough to be trusted."""


@dataclass(frozen=True)
class Model:
    classifier: Any  # a fitted scikit-learn estimator with predict_proba
    index: Any  # NearestNeighbors over the training scans
    ood_limit: float
    heldout_accuracy: float
    heldout_size: int
    train_size: int
    seconds: float


@dataclass(frozen=True)
class Prediction:
    file: str
    label: int
    confidence: float
    distance: float
    confident: bool
    truth: int | None


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


def float_setting(name: str, default: str, low: float, high: float) -> float:
    """Read a float from the environment and check its range, naming it in the error."""
    raw = os.environ.get(name, default)
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise InputError(f"{name}={value} is outside [{low}, {high}]")
    return value


def ink_map(path: Path) -> np.ndarray:
    """Reduce an image to the dataset's representation: 8x8 ink levels 0..16, flattened."""
    try:
        with Image.open(path) as img:
            gray = np.asarray(img.convert("L"), dtype=np.float64)
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from exc
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:  # dark ink on light paper: make ink the high value
        gray = 255.0 - gray
    small = Image.fromarray(gray.astype(np.uint8), mode="L").resize((8, 8), Image.Resampling.BOX)
    cells = np.asarray(small, dtype=np.float64)
    cells -= cells.min()
    peak = cells.max()
    return (cells * (16.0 / peak) if peak > 0 else cells).ravel()


def ground_truth(data_dir: Path) -> dict[str, int]:
    """Labels from an upstream manifest.json, if the parent passed one (for scoring only)."""
    path = data_dir / "manifest.json"
    if not path.is_file():
        return {}
    try:
        images = json.loads(path.read_text(encoding="utf-8"))["images"]
        return {str(m["file"]): int(m["label"]) for m in images if m.get("label") is not None}
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{path} is not a valid manifest: {exc}") from exc


def train(test_fraction: float, split_seed: int, ood_factor: float) -> Model:
    """Fit the classifier and the out-of-distribution index on the bundled digits."""
    # Imported here: scikit-learn takes about a second to import, and bad input should
    # fail fast, before paying for it.
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import NearestNeighbors
    from sklearn.svm import SVC

    started = time.perf_counter()
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data,
        digits.target,
        test_size=test_fraction,
        random_state=split_seed,
        stratify=digits.target,
    )
    classifier = CalibratedClassifierCV(SVC(gamma=0.001, C=10.0), ensemble=False, cv=3)
    classifier.fit(x_train, y_train)
    index = NearestNeighbors(n_neighbors=1).fit(x_train)
    heldout_distances = index.kneighbors(x_test)[0][:, 0]
    return Model(
        classifier=classifier,
        index=index,
        ood_limit=ood_factor * float(np.quantile(heldout_distances, 0.99)),
        heldout_accuracy=float(classifier.score(x_test, y_test)),
        heldout_size=len(y_test),
        train_size=len(y_train),
        seconds=time.perf_counter() - started,
    )


def run(base: Path) -> None:
    min_confidence = float_setting("CLASSIFIER_MIN_CONFIDENCE", "0.8", 0.0, 1.0)
    ood_factor = float_setting("CLASSIFIER_OOD_FACTOR", "1.2", 0.1, 100.0)
    test_fraction = float_setting("CLASSIFIER_TEST_FRACTION", "0.25", 0.05, 0.9)
    split_seed = int(float_setting("CLASSIFIER_SPLIT_SEED", "0", 0, 2**32 - 1))
    min_heldout = float_setting("CLASSIFIER_MIN_HELDOUT_ACCURACY", "0.9", 0.0, 1.0)

    data_dir = base / "in" / "data"
    if not data_dir.is_dir():
        raise InputError(f"input directory {data_dir} does not exist: the parent passed no files")
    images = sorted(
        p for p in data_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise InputError(f"no .png/.jpg images under {data_dir}")
    meta = read_eventmeta(base)

    features = np.stack([ink_map(p) for p in images])
    truth = ground_truth(data_dir)
    print(f"digit-classifier: {len(images)} images to classify")

    model = train(test_fraction, split_seed, ood_factor)
    print(
        f"digit-classifier: trained SVC on {model.train_size} scans in {model.seconds:.2f}s, "
        f"held-out accuracy {model.heldout_accuracy:.4f} on {model.heldout_size}"
    )
    if model.heldout_accuracy < min_heldout:
        raise QualityError(f"held-out accuracy {model.heldout_accuracy:.4f} < {min_heldout}")
    ood_limit, heldout = model.ood_limit, model.heldout_accuracy

    probabilities = model.classifier.predict_proba(features)
    distances = model.index.kneighbors(features)[0][:, 0]
    predictions: list[Prediction] = []
    for path, probs, distance in zip(images, probabilities, distances, strict=True):
        rel = path.relative_to(data_dir).as_posix()
        best = int(np.argmax(probs))
        confident = bool(probs[best] >= min_confidence and distance <= ood_limit)
        predictions.append(
            Prediction(
                file=rel,
                label=int(model.classifier.classes_[best]),
                confidence=round(float(probs[best]), 4),
                distance=round(float(distance), 2),
                confident=confident,
                truth=truth.get(rel),
            )
        )
    print(
        f"digit-classifier: classified {len(images)} images (out-of-distribution > {ood_limit:.1f})"
    )

    out = base / "out" / "data"
    out.mkdir(parents=True, exist_ok=True)
    chosen: list[str] = []
    for p in predictions:
        if p.confident:
            dest = f"by-label/{p.label}/{Path(p.file).name}"
            if dest in chosen:  # same file name in two input folders: keep both
                dest = f"by-label/{p.label}/{p.file.replace('/', '--')}"
            (out / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data_dir / p.file, out / dest)
            chosen.append(dest)
    report = {
        "model": "SVC(gamma=0.001, C=10) + 3-fold sigmoid calibration",
        "heldout_accuracy": round(heldout, 4),
        "heldout_size": model.heldout_size,
        "min_confidence": min_confidence,
        "ood_distance_limit": round(ood_limit, 2),
        "predictions": [asdict(p) for p in predictions],
    }
    (out / "labels.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    scored = [p for p in predictions if p.truth is not None]
    insights = {
        "model": str(report["model"]),
        "train_seconds": f"{model.seconds:.3f}",
        "heldout_accuracy": f"{heldout:.4f}",
        "heldout_size": str(model.heldout_size),
        "images": str(len(predictions)),
        "confident": str(len(chosen)),
        "out_of_distribution": str(sum(d > ood_limit for d in distances)),
    }
    if scored:
        correct = sum(p.label == p.truth for p in scored)
        insights["batch_accuracy"] = f"{correct / len(scored):.4f}"
    for p in predictions:
        mark = "" if p.confident else " (not confident)"
        insights[f"prediction:{p.file}"] = f"{p.label} p={p.confidence:.3f}{mark}"
    write_pairs(base / "out" / "insights.json", insights)

    event = {
        "eventType": EVENT_TYPE,
        "files": ",".join(["labels.json", *chosen]),
        "heldout_accuracy": f"{heldout:.4f}",
        "confident": str(len(chosen)),
    }
    if "seed" in meta:
        event["seed"] = meta["seed"]
    write_pairs(base / "out" / "events" / "digits-classified.json", event)
    print(f"digit-classifier: {len(chosen)}/{len(predictions)} confident; raised {EVENT_TYPE}")


def main() -> int:
    base = Path(os.environ.get("HANDLER_BASE_DIR", "/ion"))
    try:
        run(base)
    except InputError as exc:
        print(f"digit-classifier: error: {exc}", file=sys.stderr)
        return 2
    except QualityError as exc:
        print(f"digit-classifier: error: model rejected: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
