"""Prometheus and promtool from var/tools (`make tools`), and the alert-expression convention the tests check."""

import os
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TOOLS_BIN = ROOT / "var" / "tools" / "prometheus" / "usr" / "bin"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yaml"))
GRAFANA_DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))

# Grafana's variables, as an instant query right after a few seconds of 1 s scrapes should see them.
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__range": "10m"}

# A comparison with a number: `> 0.05`, `== 0`, `>= bool 1e3`.
_THRESHOLD = re.compile(r"\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?-?\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w.\[])")
_COMPARISON = re.compile(r"==|!=|>=|<=|(?<![=!<>])[<>](?!=)")


def tool(name: str) -> Path:
    """The binary, or a skip that says how to get it; under CI a missing binary fails the test."""
    path = TOOLS_BIN / name
    if path.is_file() and os.access(path, os.X_OK):
        return path
    message = f"{path.relative_to(ROOT)} is missing: run `make tools` (`make test` does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def as_prometheus_sees_it(expr: str) -> str:
    """A dashboard query with Grafana's variables filled in."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def alert_rules() -> list[dict[str, object]]:
    rules: list[dict[str, object]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


def signal_of(expr: str) -> str:
    """The expression without its threshold comparisons: what must return series while the mesh runs."""
    return _THRESHOLD.sub("", expr).strip()


def has_comparison(expr: str) -> bool:
    """Whether `expr` still compares anything; label matchers (`{a!="b"}`) are not comparisons."""
    return bool(_COMPARISON.search(re.sub(r"\{[^}]*\}", "", expr)))
