"""The Grafana dashboard and the Prometheus alert rules cannot drift from what pmsq exports.

Every metric they name is one `ClusterCollector` or `FlowGauges` exports (with the suffix its
type gives it), every metric pmsq exports is on the dashboard, each alert has its runbook
section, and the dashboard's layout is one Grafana can place. With `promtool` on the PATH (Debian's
`prometheus` package; or PROMTOOL=/path/to/promtool), the rules also pass `promtool check
rules`, their unit tests (`pmsq-alerts.test.yml`: each alert fires on its case and not on the
healthy look-alike) pass `promtool test rules`, and every dashboard query parses as PromQL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import yaml
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from pmsq.metrics import ClusterCollector
from pmsq.workers.flow.gauges import FlowGauges

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "pmsq-dashboard.json"
RULES = REPO_ROOT / "deploy" / "prometheus" / "pmsq-alerts.yml"
RULE_TESTS = REPO_ROOT / "deploy" / "prometheus" / "pmsq-alerts.test.yml"
RUNBOOK = REPO_ROOT / "docs" / "operations.md"
METRIC_NAME = re.compile(r"\bpmsq_[a-z0-9_]+\b")
#: Grafana's variables, as a query would see them on a dashboard (to parse the queries).
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "6h", "$integration": ".*"}


def exported() -> dict[str, set[str]]:
    """Each metric family pmsq exports -> the series names it is scraped as."""
    client = fakeredis.FakeRedis()
    families = [*ClusterCollector(client).collect(), *FlowGauges(client).collect()]
    names: dict[str, set[str]] = {}
    for family in families:
        if isinstance(family, CounterMetricFamily):
            names[family.name] = {f"{family.name}_total"}
        elif isinstance(family, HistogramMetricFamily):
            names[family.name] = {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
        else:
            names[family.name] = {family.name}
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> list[str]:
    queries = [t["expr"] for p in panels() for t in p.get("targets", [])]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["definition"])
    return queries


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.skip("promtool not found (apt-get install prometheus, or set PROMTOOL)")
    return found


def test_every_metric_the_dashboard_and_the_rules_name_is_exported() -> None:
    series = set().union(*exported().values())
    named = {
        "dashboard": {m for q in dashboard_queries() for m in METRIC_NAME.findall(q)},
        "rules": {m for rule in alert_rules() for m in METRIC_NAME.findall(rule["expr"])},
    }
    assert named["dashboard"] and named["rules"]
    for where, names in named.items():
        assert names <= series, f"{where} names metrics pmsq does not export: {names - series}"


def test_every_exported_metric_is_on_the_dashboard() -> None:
    on_dashboard = {m for q in dashboard_queries() for m in METRIC_NAME.findall(q)}
    missing = {family for family, names in exported().items() if not names & on_dashboard}
    assert not missing, f"no dashboard panel shows {missing}"


def test_every_alert_has_a_runbook_section() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("#")
    }
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= {
        "PmsqBacklogGrowing",
        "PmsqIntegrationPausedByThrottling",
        "PmsqPoisonJobs",
        "PmsqBeatNotFiring",
        "PmsqWebhookDeliveriesFailing",
    }
    for rule in rules:
        link = rule["annotations"]["runbook"]
        path, _, anchor = link.partition("#")
        assert (REPO_ROOT / path) == RUNBOOK, link
        assert anchor in anchors, f"{rule['alert']}: no section '{anchor}' in {RUNBOOK.name}"
        assert rule["labels"]["severity"] in {"warning", "critical"}


def test_the_dashboard_is_laid_out_as_grafana_places_it() -> None:
    data = dashboard()
    assert data["uid"] and data["title"] and data["schemaVersion"] >= 36
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in data["templating"]["list"]}
    assert variables == {"datasource", "integration"}
    cells: set[tuple[int, int]] = set()
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat"}, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["description"], f"{panel['title']} says what it shows"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"].strip(), panel["title"]


def test_the_rules_pass_promtool(tmp_path: Path) -> None:
    tool = promtool()
    checked = subprocess.run(
        [tool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [tool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    """promtool parses queries only in rule files: each query becomes a recording rule."""
    tool = promtool()
    rules = []
    for n, query in enumerate(dashboard_queries()):
        if query.startswith("label_values("):
            continue  # Grafana's own function, not PromQL
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"an unknown Grafana variable in {query}"
        rules.append({"record": f"dashboard:query_{n}", "expr": query})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [tool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout
