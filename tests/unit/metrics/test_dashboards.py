"""The Grafana dashboards are well-formed, pick their data source by variable, and every query is valid PromQL."""

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.prometheus_tools import GRAFANA_DASHBOARDS, ROOT, as_prometheus_sees_it, tool

SERVICES = ("ingest", "agent", "orders", "payments", "handoff", "gateway")


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in GRAFANA_DASHBOARDS}


def test_there_is_an_overview_a_business_view_and_one_dashboard_per_service() -> None:
    expected = {"sellmesh-overview", "sellmesh-business", *(f"sellmesh-{s}" for s in SERVICES)}
    assert set(dashboards()) == expected
    assert all(d["uid"] == stem for stem, d in dashboards().items())


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_every_panel_queries_prometheus_through_the_datasource_variable(name: str) -> None:
    dashboard = dashboards()[name]
    [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert (variable["name"], variable["query"]) == ("datasource", "prometheus")
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule; no Prometheus needs to run."""
    rules = []
    for name, dashboard in dashboards().items():
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = as_prometheus_sees_it(target["expr"])
                assert "$" not in expr, f"{name}: {panel['title']} uses a variable the tests do not know"
                rules.append({"record": f"dashboard:query{len(rules)}", "expr": expr})
    path = tmp_path / "dashboard_queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [str(tool("promtool")), "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard_folder() -> None:
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert source["type"] == "prometheus"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "sellmesh.yaml").read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
