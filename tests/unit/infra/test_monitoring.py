"""The Grafana dashboard in docs/monitoring queries only metrics the code registers, and docs/operators.md
lists every metric the code registers (so neither can name a metric that was renamed or never existed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

# Imported for their side effect: they register the platform gauges, the request metrics and every
# process's own figures (the bus, leases, routing, media), which the API re-exports.
import services.api.app
import services.api.health
import services.api.metrics
import services.kernel.partitioned
import services.kernel.service
import services.media.app
import services.routing.worker  # noqa: F401
from services.kernel.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "docs" / "monitoring" / "grafana-dashboard.json"
OPERATORS = ROOT / "docs" / "operators.md"
# PromQL words that look like our prefix never occur; everything sb_... in an expression is a series name.
SERIES = re.compile(r"\bsb_[a-z0-9_]+")
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
}


def registered_series() -> dict[str, str]:
    """Every series name the registry can expose, mapped to its metric family's name."""
    out: dict[str, str] = {}
    for family in REGISTRY.collect():
        for suffix in SAMPLE_SUFFIXES[family.type]:
            out[family.name + suffix] = family.name
    return out


def dashboard_queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dash["panels"] for target in panel["targets"]]


def test_the_dashboard_queries_only_metrics_the_code_registers() -> None:
    known = registered_series()
    queries = dashboard_queries()
    used = {name for expr in queries for name in SERIES.findall(expr)}
    assert used, "the dashboard queries nothing"
    assert sorted(used - set(known)) == []
    # Every family is on the dashboard somewhere: a new metric gets a panel or a reason not to.
    assert {known[name] for name in used} == set(known.values())


def test_the_dashboard_is_importable_grafana_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    ids = [panel["id"] for panel in dash["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dash["templating"]["list"]}
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"].strip("${}") in variables
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            # Balanced brackets: a typo would make Grafana show an error instead of a graph.
            expr = target["expr"]
            for left, right in ("()", "{}", "[]"):
                assert expr.count(left) == expr.count(right), expr


def test_operators_doc_lists_every_metric() -> None:
    text = OPERATORS.read_text()
    missing = [name for name in sorted(set(registered_series())) if f"`{name}`" not in text]
    assert missing == []
