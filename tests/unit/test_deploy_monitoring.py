"""deploy/prometheus-alerts.yml and deploy/grafana-dashboard.json name only what we export.

promtool is not installed here (Debian's prometheus package is ~100 MB), so this is a parse
check: the files load, every rule has what Alertmanager needs, brackets balance, and every
``campaign_bridge_*`` series and every label it is filtered on exists in :mod:`metrics`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from campaign_bridge.metrics import NAMES, PREFIX, Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERIES = re.compile(r"\b(campaign_bridge_[a-z0-9_]+)\s*(\{[^}]*\})?")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)")


def exported() -> dict[str, set[str]]:
    """Every sample name /-/metrics can show -> the labels it carries."""
    metrics = Metrics()
    names: dict[str, set[str]] = {}
    for collector, series in metrics.registry._collector_to_names.items():
        labels = set(getattr(collector, "_labelnames", ()))
        for name in series:
            names[name] = labels | ({"le"} if name.endswith("_bucket") else set())
    return names


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    document = json.loads((DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8"))
    return [target["expr"] for panel in document["panels"] for target in panel["targets"]]


def check_expression(expr: str, known: dict[str, set[str]]) -> list[str]:
    problems = []
    for opening, closing in ("()", "{}", "[]"):
        if expr.count(opening) != expr.count(closing):
            problems.append(f"unbalanced {opening}{closing} in {expr!r}")
    found = SERIES.findall(expr)
    for name, selector in found:
        if name not in known:
            problems.append(f"{name} is not exported")
            continue
        for label, _op in MATCHER.findall(selector):
            if label not in known[name]:
                problems.append(f"{name} has no label {label!r}")
    return problems


def test_every_documented_name_is_exported() -> None:
    known = exported()
    for key in NAMES:
        assert any(name.startswith(f"{PREFIX}_{key}") for name in known), key


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_alert_rules_use_exported_metrics(rule: dict[str, Any]) -> None:
    assert set(rule) >= {"alert", "expr", "labels", "annotations"}
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule["annotations"]["summary"]
    expr = str(rule["expr"])
    assert check_expression(expr, exported()) == []
    if rule["alert"] != "CampaignBridgeDown":  # `up` is Prometheus's own
        assert SERIES.search(expr), expr


def test_dashboard_uses_exported_metrics() -> None:
    expressions = dashboard_expressions()
    assert len(expressions) >= 10
    known = exported()
    problems = [p for expr in expressions for p in check_expression(expr, known)]
    assert problems == []
    shown = {name for expr in expressions for name, _ in SERIES.findall(expr)}
    # the series an operator needs first are on the dashboard
    for key in ("last_success_timestamp_seconds", "rejected_records", "webhook_queue_age_seconds"):
        assert f"{PREFIX}_{key}" in shown


def test_the_check_catches_mistakes() -> None:
    known = exported()
    assert check_expression("campaign_bridge_runs_total{status='failed'}", known) == []
    assert check_expression("campaign_bridge_nope_total > 0", known) == [
        "campaign_bridge_nope_total is not exported"
    ]
    assert check_expression('campaign_bridge_runs_total{colour="red"}', known) == [
        "campaign_bridge_runs_total has no label 'colour'"
    ]
    assert check_expression("sum(rate(campaign_bridge_runs_total[5m])", known) == [
        "unbalanced () in 'sum(rate(campaign_bridge_runs_total[5m])'"
    ]
