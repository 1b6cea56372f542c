"""The alert rules and scrape config pass promtool, their unit tests pass, and each alert keeps the conventions."""

import re
import subprocess

import pytest

from tests.prometheus_tools import PROMETHEUS_DIR, ROOT, RULE_FILES, alert_rules, has_comparison, signal_of, tool

RUNBOOK = ROOT / "docs" / "runbook.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("promtool")), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60, check=False
    )


def test_rule_files_and_scrape_config_pass_promtool_checks() -> None:
    assert RULE_FILES, "no rule files under deploy/prometheus/rules"
    rules = promtool("check", "rules", *(str(p) for p in RULE_FILES))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_alert_fires_and_stays_quiet_as_its_promtool_tests_expect() -> None:
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*.yaml"))
    assert tests, "no promtool tests under deploy/prometheus/tests"
    result = promtool("test", "rules", *(str(p) for p in tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_by_promtool() -> None:
    tested = "\n".join(p.read_text() for p in (PROMETHEUS_DIR / "tests").glob("*.yaml"))
    untested = [rule["alert"] for rule in alert_rules() if f"alertname: {rule['alert']}\n" not in tested]
    assert not untested


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_is_signals_compared_with_numbers(rule: dict[str, object]) -> None:
    """The convention the end-to-end check relies on: removing the thresholds leaves a query with no comparison."""
    expr = str(rule["expr"])
    signal = signal_of(expr)
    assert signal != expr.strip(), f"{rule['alert']} compares nothing with a number"
    assert not has_comparison(signal), f"{rule['alert']} compares signals with each other: {signal}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_has_a_severity_and_a_runbook_section(rule: dict[str, object]) -> None:
    labels = rule.get("labels")
    annotations = rule.get("annotations")
    assert isinstance(labels, dict) and labels.get("severity") in {"warning", "critical"}
    assert isinstance(annotations, dict) and annotations.get("summary")
    assert annotations.get("runbook") == f"docs/runbook.md#{str(rule['alert']).lower()}"
    headings = re.findall(r"^### (\S+)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE)
    assert rule["alert"] in headings, f"docs/runbook.md has no '### {rule['alert']}' under '## Alerts'"


def test_stripping_thresholds_keeps_the_signals() -> None:
    expr = 'max by (topic) (x{a!="b"}) > 1e3\nand\nrate(y[5m]) >= bool 0.05'
    assert signal_of(expr) == 'max by (topic) (x{a!="b"})\nand\nrate(y[5m])'
    assert has_comparison("a > b")
    assert not has_comparison('a{b!="c"} / d')
