"""Run every media-classifiers module as a real subprocess, the way Ion's handler would.

Each test lays out a temporary HANDLER_BASE_DIR per the 2018 file contract (``in/data``,
``in/eventmeta.json``, empty ``out/...``), runs the module's command from pipeline.yaml,
then checks its outputs as the handler's commit would: event files name a declared
event type, every listed file exists under ``out/data``, all values are strings. The
events of one level become the inputs of the next, so the fixtures walk the whole tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

HERE = Path(__file__).resolve().parents[1]
PIPELINE: dict[str, Any] = yaml.safe_load((HERE / "pipeline.yaml").read_text(encoding="utf-8"))
MODULES: dict[str, dict[str, Any]] = {m["name"]: m for m in PIPELINE["modules"]}
ROOT_DATA: dict[str, str] = PIPELINE["root_data"]


@dataclass
class Job:
    """One module run: its job directory, exit status, logs and committed outputs."""

    module: str
    base: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    events: list[dict[str, str]] = field(default_factory=list)
    insights: dict[str, str] = field(default_factory=dict)

    @property
    def out_data(self) -> Path:
        return self.base / "out" / "data"

    def event(self, event_type: str) -> dict[str, str]:
        matches = [e for e in self.events if e["eventType"] == event_type]
        assert len(matches) == 1, f"{self.module}: expected one {event_type}, got {self.events}"
        return matches[0]

    def files(self, event: Mapping[str, str]) -> list[str]:
        return [f for f in event.get("files", "").split(",") if f]


def read_pairs(path: Path) -> dict[str, str]:
    """Parse a {key, value} array the way the committer does: strings only, no duplicates."""
    pairs = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(pairs, list), f"{path} is not a JSON array"
    result: dict[str, str] = {}
    for pair in pairs:
        assert set(pair) == {"key", "value"}, f"{path}: bad pair {pair}"
        assert isinstance(pair["key"], str) and isinstance(pair["value"], str), pair
        assert pair["key"] not in result, f"{path}: duplicate key {pair['key']}"
        result[pair["key"]] = pair["value"]
    return result


def run_module(
    name: str,
    base: Path,
    files: Mapping[str, Path] | None = None,
    eventmeta: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    make_in_data: bool = True,
) -> Job:
    """Prepare a job directory, run the module's command, and validate its outputs.

    The module sees only a few basic variables, its `env` from pipeline.yaml and
    HANDLER_BASE_DIR, as under Ion's handler.
    """
    spec = MODULES[name]
    in_data = base / "in" / "data"
    if make_in_data:
        in_data.mkdir(parents=True)
    for rel, source in (files or {}).items():
        (in_data / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, in_data / rel)
    (base / "in").mkdir(parents=True, exist_ok=True)
    if eventmeta:  # like the 2018 prepare: written only when non-empty
        body = [{"key": k, "value": v} for k, v in eventmeta.items()]
        (base / "in" / "eventmeta.json").write_text(json.dumps(body), encoding="utf-8")
    for sub in ("out/data", "out/events"):
        (base / sub).mkdir(parents=True)
    (base / "out" / "insights.json").write_text("", encoding="utf-8")

    argv = [sys.executable if arg == "python" else arg for arg in spec["command"]]
    argv = [str(HERE / a) if (HERE / a).is_file() else a for a in argv]
    basics = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    job_env = {**basics, **spec.get("env", {}), **(env or {}), "HANDLER_BASE_DIR": str(base)}
    started = time.perf_counter()
    proc = subprocess.run(
        argv,
        cwd=base,
        env=job_env,
        capture_output=True,
        text=True,
        timeout=spec["max_execution_seconds"],
        check=False,
    )
    job = Job(name, base, proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - started)
    if proc.returncode != 0:
        return job

    insights_text = (base / "out" / "insights.json").read_text(encoding="utf-8")
    job.insights = read_pairs(base / "out" / "insights.json") if insights_text else {}
    for event_file in sorted((base / "out" / "events").glob("*.json")):
        event = read_pairs(event_file)
        assert event.get("eventType") in spec["publishes"], f"{name}: undeclared {event}"
        for rel in job.files(event):
            assert (job.out_data / rel).is_file(), f"{name}: event lists missing file {rel}"
        job.events.append(event)
    return job


def child_inputs(job: Job, event: Mapping[str, str]) -> tuple[dict[str, Path], dict[str, str]]:
    """What the next module receives: the listed files (sub-paths kept) and the other pairs.

    Like the 2018 handler, a ``<file> -> <url>`` pair per passed file is added to the
    metadata, so the modules are also checked to ignore keys they do not know.
    """
    files = {rel: job.out_data / rel for rel in job.files(event)}
    meta = {k: v for k, v in event.items() if k not in ("eventType", "files")}
    meta.update({rel: f"blob://{job.module}/{rel}" for rel in files})
    return files, meta


def ok(job: Job) -> Job:
    assert job.returncode == 0, f"{job.module} failed:\n{job.stdout}\n{job.stderr}"
    return job


# --- the tree, one level per fixture ---------------------------------------------------


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Job:
    return ok(run_module("ingest", tmp_path_factory.mktemp("ingest"), eventmeta=ROOT_DATA))


@pytest.fixture(scope="module")
def classified(tmp_path_factory: pytest.TempPathFactory, ingested: Job) -> Job:
    files, meta = child_inputs(ingested, ingested.event("media.ingested"))
    return ok(run_module("digit-classifier", tmp_path_factory.mktemp("cls"), files, meta))


@pytest.fixture(scope="module")
def thumbnailed(tmp_path_factory: pytest.TempPathFactory, ingested: Job) -> Job:
    files, meta = child_inputs(ingested, ingested.event("media.ingested"))
    return ok(run_module("thumbnailer", tmp_path_factory.mktemp("thumbs"), files, meta))


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory, classified: Job) -> Job:
    files, meta = child_inputs(classified, classified.event("digits.classified"))
    return ok(run_module("stats-reporter", tmp_path_factory.mktemp("stats"), files, meta))


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, reported: Job) -> Job:
    files, meta = child_inputs(reported, reported.event("report.ready"))
    return ok(run_module("html-report", tmp_path_factory.mktemp("html"), files, meta))


# --- pipeline.yaml -----------------------------------------------------------------------


def test_pipeline_yaml_describes_a_tree_with_a_fan_out() -> None:
    assert PIPELINE["name"] == "media-classifiers"
    assert all(isinstance(v, str) for v in ROOT_DATA.values())
    assert len(MODULES) == len(PIPELINE["modules"]) >= 4
    published_by = {e: m["name"] for m in MODULES.values() for e in m["publishes"]}
    depth: dict[str, int] = {}
    for name, spec in MODULES.items():
        assert re.fullmatch(r"[a-z0-9-]{1,40}", name)
        assert spec["command"][0] == "python" and (HERE / spec["command"][1]).is_file()
        assert all(isinstance(v, str) for v in spec.get("env", {}).values())
        assert spec["retry_count"] >= 0 and spec["max_execution_seconds"] > 0
        event, level = spec["subscribes_to"], 1
        while event != PIPELINE["root_event"]:
            event, level = MODULES[published_by[event]]["subscribes_to"], level + 1
        depth[name] = level
    assert max(depth.values()) >= 3
    subscribers = [m["subscribes_to"] for m in MODULES.values()]
    assert any(subscribers.count(e) >= 2 for e in subscribers), "no fan-out"


# --- level 1: ingest ---------------------------------------------------------------------


def test_ingest_renders_the_requested_batch(ingested: Job) -> None:
    event = ingested.event("media.ingested")
    files = ingested.files(event)
    images = [f for f in files if f.endswith(".png")]
    assert len(images) == int(ROOT_DATA["count"]) + int(MODULES["ingest"]["env"]["INGEST_PHOTOS"])
    assert "manifest.json" in files and event["seed"] == ROOT_DATA["seed"]
    assert any(f.startswith("images/digits/") for f in images)
    for rel in images:
        with Image.open(ingested.out_data / rel) as img:
            assert img.size == (64, 64)
    manifest = json.loads((ingested.out_data / "manifest.json").read_text())
    assert [m["file"] for m in manifest["images"]] == images
    assert ingested.insights["digits"] == ROOT_DATA["count"]
    assert "ingest:" in ingested.stdout


def test_ingest_is_deterministic_given_the_seed(tmp_path: Path, ingested: Job) -> None:
    again = ok(run_module("ingest", tmp_path / "a", eventmeta=ROOT_DATA))
    other = ok(run_module("ingest", tmp_path / "b", eventmeta={**ROOT_DATA, "seed": "8"}))
    rel = "images/digits/digit-000.png"
    assert (again.out_data / rel).read_bytes() == (ingested.out_data / rel).read_bytes()
    assert again.events == ingested.events
    assert other.insights["true_labels"] != ingested.insights["true_labels"]


def test_ingest_works_without_eventmeta(tmp_path: Path) -> None:
    job = ok(run_module("ingest", tmp_path, make_in_data=False, env={"INGEST_DEFAULT_COUNT": "3"}))
    assert job.insights["digits"] == "3"


@pytest.mark.parametrize(
    ("meta", "message"),
    [({"count": "lots"}, "count='lots' is not an integer"), ({"count": "0"}, "count=0")],
)
def test_ingest_rejects_a_bad_count(tmp_path: Path, meta: dict[str, str], message: str) -> None:
    job = run_module("ingest", tmp_path, eventmeta=meta)
    assert job.returncode != 0
    assert message in job.stderr


# --- level 2, fan-out: thumbnailer and digit-classifier on the same input --------------


def test_fan_out_both_subscribers_process_the_same_files(
    ingested: Job, thumbnailed: Job, classified: Job
) -> None:
    subscribers = [m for m, s in MODULES.items() if s["subscribes_to"] == "media.ingested"]
    assert sorted(subscribers) == ["digit-classifier", "thumbnailer"]
    images = sorted(f for f in ingested.files(ingested.event("media.ingested")) if ".png" in f)
    labels = json.loads((classified.out_data / "labels.json").read_text())
    assert sorted(p["file"] for p in labels["predictions"]) == images
    thumbs = [f for f in thumbnailed.files(thumbnailed.event("media.thumbnailed")) if "/" in f]
    assert sorted(f.removeprefix("thumbs/") for f in thumbs) == images


def test_thumbnailer_makes_small_thumbnails_and_a_contact_sheet(thumbnailed: Job) -> None:
    event = thumbnailed.event("media.thumbnailed")
    files = thumbnailed.files(event)
    assert files[0] == "contact-sheet.png"
    for rel in files[1:]:
        with Image.open(thumbnailed.out_data / rel) as img:
            assert max(img.size) <= int(MODULES["thumbnailer"]["env"]["THUMB_SIZE"])
    with Image.open(thumbnailed.out_data / "contact-sheet.png") as sheet:
        assert sheet.width > 8 * 32 and sheet.height > 32
    assert int(thumbnailed.insights["bytes_out"]) < int(thumbnailed.insights["bytes_in"])


def test_classifier_is_accurate_and_rejects_photos(classified: Job) -> None:
    assert float(classified.insights["heldout_accuracy"]) >= 0.95
    assert int(classified.insights["heldout_size"]) > 300
    labels = json.loads((classified.out_data / "labels.json").read_text())
    predictions = labels["predictions"]
    digits = [p for p in predictions if p["truth"] is not None]
    photos = [p for p in predictions if p["file"].startswith("images/photos/")]
    assert photos and not any(p["confident"] for p in photos)
    assert sum(p["label"] == p["truth"] for p in digits) / len(digits) >= 0.9
    confident = [p for p in digits if p["confident"]]
    assert len(confident) >= 0.75 * len(digits)
    assert all(p["label"] == p["truth"] for p in confident)

    event = classified.event("digits.classified")
    files = classified.files(event)
    assert files[0] == "labels.json" and len(files) == 1 + len(confident)
    for p in confident:
        assert f"by-label/{p['label']}/{Path(p['file']).name}" in files
    assert event["seed"] == ROOT_DATA["seed"]
    assert event["heldout_accuracy"] == classified.insights["heldout_accuracy"]
    assert classified.insights[f"prediction:{digits[0]['file']}"].startswith(
        str(digits[0]["label"])
    )


def test_classifier_reads_light_ink_on_dark_too(tmp_path: Path) -> None:
    """Raw dataset polarity (ink bright, background black), bigger and as JPEG."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    sources: dict[str, Path] = {}
    for index in (0, 11, 42, 99, 250):
        img = Image.fromarray((digits.images[index] * 255 / 16).astype(np.uint8), mode="L")
        path = tmp_path / f"src-{index}-{digits.target[index]}.jpg"
        img.resize((96, 96), Image.Resampling.BICUBIC).save(path, quality=95)
        sources[f"scans/{path.name}"] = path
    job = ok(run_module("digit-classifier", tmp_path / "job", sources))
    labels = json.loads((job.out_data / "labels.json").read_text())
    for p in labels["predictions"]:
        assert p["label"] == int(Path(p["file"]).stem.split("-")[-1]), p
    assert "seed" not in job.event("digits.classified")


def test_classifier_rejects_a_bad_setting(tmp_path: Path, ingested: Job) -> None:
    files, meta = child_inputs(ingested, ingested.event("media.ingested"))
    job = run_module(
        "digit-classifier", tmp_path, files, meta, env={"CLASSIFIER_MIN_CONFIDENCE": "high"}
    )
    assert job.returncode == 2
    assert "CLASSIFIER_MIN_CONFIDENCE='high' is not a number" in job.stderr


def test_classifier_refuses_to_publish_from_a_weak_model(tmp_path: Path, ingested: Job) -> None:
    files, meta = child_inputs(ingested, ingested.event("media.ingested"))
    job = run_module(
        "digit-classifier", tmp_path, files, meta, env={"CLASSIFIER_MIN_HELDOUT_ACCURACY": "1"}
    )
    assert job.returncode == 3
    assert "model rejected: held-out accuracy" in job.stderr


# --- levels 3 and 4 ----------------------------------------------------------------------


def test_stats_reporter_counts_the_confident_digits(classified: Job, reported: Job) -> None:
    report = json.loads((reported.out_data / "report.json").read_text())
    labels = json.loads((classified.out_data / "labels.json").read_text())
    confident = [p for p in labels["predictions"] if p["confident"]]
    assert sum(report["histogram"].values()) == report["confident"] == len(confident)
    assert report["even"] + report["odd"] == len(confident)
    assert report["batch_accuracy"] >= 0.9
    assert report["rejected"] == [p["file"] for p in labels["predictions"] if not p["confident"]]
    with Image.open(reported.out_data / "histogram.png") as chart:
        assert chart.size == (320, 180)
    event = reported.event("report.ready")
    assert reported.files(event) == ["report.json", "histogram.png"]
    assert event["heldout_accuracy"] == classified.insights["heldout_accuracy"]
    assert reported.insights["histogram"].count(",") == 9


def test_html_report_embeds_the_chart(published: Job) -> None:
    page = (published.out_data / "report.html").read_text()
    assert "data:image/png;base64,iVBORw0KGgo" in page
    assert "Digits found in the batch" in page and "held-out accuracy" in page
    event = published.event("report.published")
    assert published.files(event) == ["report.html"]
    assert event["seed"] == ROOT_DATA["seed"]


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["thumbnailer", "digit-classifier", "stats-reporter"])
def test_missing_in_data_fails_with_a_clear_message(tmp_path: Path, module: str) -> None:
    job = run_module(module, tmp_path, make_in_data=False)
    assert job.returncode == 2
    assert f"{module}: error:" in job.stderr and str(tmp_path / "in" / "data") in job.stderr
    assert not list((tmp_path / "out" / "events").iterdir())


def test_html_report_without_its_inputs_fails(tmp_path: Path) -> None:
    job = run_module("html-report", tmp_path)
    assert job.returncode == 2
    assert "report.json is missing" in job.stderr


def test_stats_reporter_rejects_a_foreign_labels_file(tmp_path: Path) -> None:
    bogus = tmp_path / "labels.json"
    bogus.write_text(json.dumps({"predictions": [{"file": "x.png"}]}))
    job = run_module("stats-reporter", tmp_path / "job", {"labels.json": bogus})
    assert job.returncode == 2
    assert "lacks one of" in job.stderr


# --- the whole tree, driven only by pipeline.yaml ----------------------------------------


def walk(root: Path) -> Iterator[Job]:
    """A tiny in-process dispatcher: deliver each event to every module subscribed to it."""
    pending: list[tuple[str, dict[str, Path], dict[str, str]]] = [
        (PIPELINE["root_event"], {}, dict(ROOT_DATA))
    ]
    while pending:
        event_type, files, meta = pending.pop(0)
        for name, spec in MODULES.items():
            if spec["subscribes_to"] == event_type:
                job = ok(
                    run_module(name, root / f"{len(list(root.iterdir())):02d}-{name}", files, meta)
                )
                yield job
                for event in job.events:
                    pending.append((event["eventType"], *child_inputs(job, event)))


def test_whole_tree_runs_from_the_pipeline_file(tmp_path: Path) -> None:
    jobs = list(walk(tmp_path))
    assert sorted(j.module for j in jobs) == sorted(MODULES)
    raised = {e["eventType"] for j in jobs for e in j.events}
    assert raised == {e for m in MODULES.values() for e in m["publishes"]}
    timings = ", ".join(f"{j.module} {j.seconds:.2f}s" for j in jobs)
    print(f"module wall times: {timings}")
    assert sum(j.seconds for j in jobs) < 30, timings
