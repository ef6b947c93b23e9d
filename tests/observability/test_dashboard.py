"""deployment/grafana/ion-dashboard.json reads only metrics and labels Ion exposes.

The names come from a real `/metrics` endpoint (`ion.core.metrics.serve`, scraped over HTTP):
each family's `# TYPE` gives its sample names (a counter's `_total`, a histogram's `_bucket`,
`_sum` and `_count`). Every PromQL query of the dashboard (panels and template variables) must
name at least one of them and nothing else that looks like a metric, and group or select only
by labels those metrics have.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ion.core import metrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deployment" / "grafana" / "ion-dashboard.json"

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
PROMQL_WORDS = {
    "sum",
    "by",
    "rate",
    "histogram_quantile",
    "label_values",
    "le",
    "rate_interval",
    "module",
}


def exposed() -> dict[str, set[str]]:
    """Ion's sample names from a live endpoint, each with the label names it carries."""
    server = metrics.serve("127.0.0.1", 0)
    try:
        with urllib.request.urlopen(server.url, timeout=10) as answer:
            text = answer.read().decode()
    finally:
        server.close()
    labels = {c._name: set(c._labelnames) for c in metrics.FAMILIES}  # type: ignore[attr-defined]
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("ion_"):
            continue
        for suffix in SUFFIXES[family.type]:
            extra = {"le"} if suffix == "_bucket" else set()
            names[family.name + suffix] = labels[family.name] | extra
    return names


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets and query template variables."""
    found = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["query"]["query"])
    return found


def test_the_endpoint_exposes_every_family_ion_declares() -> None:
    names = exposed()
    declared = {f._name for f in metrics.FAMILIES}  # type: ignore[attr-defined]
    seen = {n.removesuffix(s) for n in names for s in ("_total", "_bucket") if n.endswith(s)}
    seen |= {n for n in names if not n.endswith(("_total", "_bucket", "_sum", "_count"))}
    assert seen == declared
    for name in names:
        assert name.startswith("ion_")
        assert name.endswith(("_total", "_seconds_bucket", "_seconds_sum", "_seconds_count")) or (
            name == "ion_jobs_in_flight"
        ), f"{name}: counters end in _total, durations in _seconds"


def test_every_dashboard_query_uses_only_metrics_and_labels_ion_exposes() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = exposed()
    exprs = queries(dashboard)
    assert len(exprs) >= 10
    used: set[str] = set()
    for expr in exprs:
        metric_names = set(re.findall(r"\bion_[a-z0-9_]+\b", expr))
        assert metric_names, f"no Ion metric in {expr!r}"
        unknown = metric_names - set(names)
        assert not unknown, f"{expr!r} reads {sorted(unknown)}, which Ion does not expose"
        used |= metric_names
        # Anything else in selector position (a name before `{` or `[`) would be a foreign metric.
        for token in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", expr):
            assert token in names, f"{expr!r} selects {token!r}"
        labels = set().union(*(names[n] for n in metric_names))
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            grouped = {g.strip() for g in group.split(",")}
            assert grouped <= labels, f"{expr!r} groups by {sorted(grouped - labels)}"
        for selector in re.findall(r"\{([^}]*)\}", expr):
            selected = set(re.findall(r"([a-z_]+)\s*[=!]~?\"", selector))
            assert selected <= labels, f"{expr!r} selects on {sorted(selected - labels)}"
        for word in re.findall(r"\b([a-z_]+)\s*\(", expr):
            assert word in PROMQL_WORDS, f"{expr!r} calls {word!r}"
    # The dashboard shows every family (at least one of its samples).
    families = {n.removesuffix(s) for n in names for s in ("_total", "_bucket", "_sum", "_count")}
    shown = {n.removesuffix(s) for n in used for s in ("_total", "_bucket", "_sum", "_count")}
    assert {f for f in families if f in {x._name for x in metrics.FAMILIES}} <= shown  # type: ignore[attr-defined]


def test_the_dashboard_is_grafana_json_with_unique_panel_ids() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
