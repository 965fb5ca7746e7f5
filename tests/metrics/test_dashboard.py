"""The Grafana dashboard in docs/grafana is valid JSON whose every query names series the
appliance's /metrics exports (the catalogue; the whole-appliance test checks the catalogue
against a real scrape), with the panels an operator needs."""

from __future__ import annotations

import json
import re

from testutil import REPO

from appliance.metrics.series import STAGES, exported_samples

DASHBOARD = REPO / "docs" / "grafana" / "appliance.json"
NAME = re.compile(r"\bappliance_[a-z0-9_]+")


def queries(dash: dict) -> list[str]:
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        exprs.append(q["query"] if isinstance(q, dict) else q)
    return exprs


def dashboard_names() -> set[str]:
    return {n for e in queries(json.loads(DASHBOARD.read_text())) for n in NAME.findall(e)}


def test_dashboard_is_valid_json_and_every_query_uses_exported_series():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["uid"] and dash["panels"]
    assert dash["__inputs"][0]["pluginId"] == "prometheus"  # importable: asks for the data source
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    unknown = dashboard_names() - exported_samples()
    assert not unknown, f"the dashboard queries series /metrics does not export: {sorted(unknown)}"


def test_dashboard_has_the_operator_panels():
    exprs = queries(json.loads(DASHBOARD.read_text()))
    text = "\n".join(exprs)
    assert "appliance_active_calls" in text
    assert re.search(r"sum by \(outcome\) \(rate\(appliance_calls_total", text)
    for q in ("0.5", "0.95"):  # p50 and p95 of every stage (the stage label is kept)
        assert re.search(rf"histogram_quantile\({q}, sum by \(le, stage\) \(rate\(appliance_turn_latency_seconds_bucket",
                         text), q
    assert "appliance_rtp_packets_lost_total" in text and "appliance_rtp_jitter_max_seconds" in text
    assert "appliance_tool_failures_total" in text and "appliance_tool_call_duration_seconds_bucket" in text
    assert "appliance_service_restarts_total" in text and "appliance_ring_overrun_frames_total" in text
    assert len(STAGES) == 5


def test_readme_documents_every_series():
    from appliance.metrics.series import CATALOGUE

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Metrics (Prometheus)"):]
    section = section[:section.index("\n## ", 1)]
    missing = [s.name for s in CATALOGUE if f"`{s.name}`" not in section]
    assert not missing, missing
    assert "9464" in section and "docs/grafana/appliance.json" in section
