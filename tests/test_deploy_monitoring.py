"""deploy/prometheus and deploy/grafana: every metric they name is one a real daemon exports,
with the labels they select on, and the alerts cover what an operator must hear about."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from coordinator.daemon.daemon import Daemon
from coordinator.settings import load_settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ALERTS = DEPLOY / "prometheus" / "coordinator-alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "coordinator-dashboard.json"
KUBERNETES = DEPLOY / "kubernetes" / "coordinator.yaml"
# series Prometheus makes itself, not the exporter
PROMETHEUS_OWN = {"up"}
_SELECTOR = re.compile(r"\b([a-z_:][a-z0-9_:]*)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-z_]+)\s*(?:=~|!~|!=|=)\s*"')
_FUNCTIONS = {"sum", "max", "min", "avg", "count", "rate", "increase", "irate", "by", "without",
              "histogram_quantile", "absent", "or", "and", "unless", "vector", "clamp_min",
              "max_over_time", "min_over_time", "changes", "resets", "time", "le", "on",
              "ignoring", "bool", "offset", "topk", "label_replace", "delta", "deriv",
              "absent_over_time", "sum_over_time", "avg_over_time", "count_over_time"}


async def exported(redis: Any) -> dict[str, set[str]]:
    """Each sample name a real daemon's /metrics holds, with its label names."""
    daemon = Daemon(load_settings(node_id="a", lease_ttl=2, renew_interval=0.5,
                                  heartbeat_interval=0.5), redis=redis)
    await daemon.start()
    try:
        daemon.metrics.set_state(daemon.status_snapshot(), deadline_in=daemon.lease_deadline_in(),
                                 heartbeat_age=daemon.heartbeat_age())
        text = daemon.metrics.render().decode()
    finally:
        await daemon.stop()
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def metrics_in(expr: str) -> list[tuple[str, set[str]]]:
    """Each metric a PromQL expression selects, with the label names it matches on."""
    stripped = re.sub(r'"[^"]*"', '""', expr)  # strings hold no metric names
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)  # nor range durations
    found = []
    for match in _SELECTOR.finditer(re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "",
                                           stripped)):
        name = match.group(1)
        if name in _FUNCTIONS or re.fullmatch(r"[0-9a-z]*[0-9][a-z]*", name):
            continue
        labels = set(_MATCHER.findall(expr[match.start():])) if match.group(2) else set()
        found.append((name, labels if match.group(2) else set()))
    return found


def test_the_metric_parser_of_this_test_finds_names_and_labels() -> None:
    assert metrics_in('sum(increase(coordinator_state_transitions_total{to="leader"}[1h])) > 6'
                      ) == [("coordinator_state_transitions_total", {"to"})]


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
async def test_every_metric_named_is_exported_by_a_real_daemon(redis: Any, source: str) -> None:
    names = await exported(redis)
    exprs = [r["expr"] for r in alert_rules()] if source == "alerts" else dashboard_exprs()
    assert exprs
    for expr in exprs:
        selected = metrics_in(expr)
        assert selected, expr
        for name, labels in selected:
            if name in PROMETHEUS_OWN:
                continue
            assert name in names, f"{name} (in {expr!r}) is not exported; have {sorted(names)}"
            assert labels <= names[name] | {"job", "instance"}, (name, labels, names[name])


def test_the_alerts_cover_no_leader_flapping_renew_failures_and_stale_controllers() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert "``" not in json.dumps(rule)
    no_leader = rules["CoordinatorNoLeader"]
    assert "coordinator_is_leader" in no_leader["expr"]
    # no leader for longer than a TTL: the for: is at least the deployed TTL
    config = next(d for d in yaml.safe_load_all(KUBERNETES.read_text())
                  if d and d["kind"] == "ConfigMap")["data"]
    assert seconds(no_leader["for"]) >= float(config["COORDINATOR_LEASE_TTL"])
    assert 'to="leader"' in rules["CoordinatorLeadershipFlapping"]["expr"]
    assert "[1h]" in rules["CoordinatorLeadershipFlapping"]["expr"]
    assert "coordinator_lease_renew_failures_total" in rules["CoordinatorRenewFailures"]["expr"]
    assert "coordinator_heartbeat_age_seconds" in rules["CoordinatorControllerStale"]["expr"]
    assert "up" in rules["CoordinatorDown"]["expr"]


def test_the_dashboard_is_grafana_json_with_a_prometheus_datasource_variable() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) >= 6
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert all(t["refId"] for t in panel["targets"])


def seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)([smh])", duration))
