"""No metric of any service carries an unbounded label: no tenant, customer, conversation, order or event ids.

Tenants appear only as their plan `tier` (docs/architecture.md, "Metrics and labels").
"""

import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from sellmesh.http_metrics import HttpMetricsMiddleware
from sellmesh.metrics import webhook_rejected
from tests.unit.metrics.exercise import close_command, record, subscription

FORBIDDEN = re.compile(
    r"tenant|customer|conversation|order_id|event_id|correlation|causation|message_id|session|phone|email|user|path|url"
)
# An id or a phone number in a label value means a label is unbounded whatever its name.
ID_LIKE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-|\d{7,}|cs_test_|wamid\.")
LIBRARY_PREFIXES = ("process_", "python_", "gc_")
# Histogram bucket bounds and summary quantiles are fixed by the metric's definition, so a long number there is fine.
BOUNDED_BY_DEFINITION = frozenset({"le", "quantile"})
ROOT = Path(__file__).resolve().parents[3]
DECLARES_METRICS = re.compile(r"(?<![A-Za-z_])(Counter|Gauge|Histogram|Summary|Info|Enum)\(")


def metric_modules() -> list[str]:
    """Every module of ours that declares a metric, found by reading the source, so none is forgotten."""
    found = []
    for package in ("sellmesh", "services"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            if "prometheus_client" in text and DECLARES_METRICS.search(text):
                found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def every_label() -> Iterator[tuple[str, str, str]]:
    """(metric, label name, label value) for every sample, plus every declared label name."""
    for collector in list(REGISTRY._collector_to_names):  # the registry's own index of collectors
        for name in getattr(collector, "_labelnames", ()):
            yield getattr(collector, "_name", "?"), name, ""
    for family in REGISTRY.collect():
        for sample in family.samples:
            for name, value in sample.labels.items():
                yield family.name, name, value


async def exercise_everything() -> None:
    for module in metric_modules():
        importlib.import_module(module)
    sub, _ = subscription("policy_handler", fail_with=RuntimeError)
    await sub.consume(record(close_command()))
    webhook_rejected("meta", "bad_signature")
    app = FastAPI()

    @app.get("/v1/orders/{order_id}")
    async def order(order_id: str) -> dict[str, str]:
        return {"order_id": order_id}

    transport = httpx.ASGITransport(app=HttpMetricsMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        await http.get("/v1/orders/5b0f8d0e-3f1f-4c1e-9d7e-3c1a2b7d9e01")
        await http.get("/v1/no-such-thing/15551234567")


def test_metric_modules_are_found() -> None:
    assert {"sellmesh.metrics", "services.agent.metrics", "services.orders.handlers"} <= set(metric_modules())


async def test_no_metric_has_an_id_shaped_label() -> None:
    await exercise_everything()
    labels = list(every_label())
    assert {(metric, name) for metric, name, _ in labels if FORBIDDEN.search(name)} == set()
    id_like = {
        (m, name, value) for m, name, value in labels if name not in BOUNDED_BY_DEFINITION and ID_LIKE.search(value)
    }
    assert id_like == set()


async def test_every_metric_of_ours_is_prefixed_sellmesh() -> None:
    await exercise_everything()
    names = {family.name for family in REGISTRY.collect()}
    assert {n for n in names if not n.startswith(("sellmesh_", *LIBRARY_PREFIXES))} == set()


async def test_http_requests_are_labelled_by_route_template_not_path() -> None:
    await exercise_everything()
    routes = {value for metric, name, value in every_label() if metric.startswith("sellmesh_http") and name == "route"}
    assert {"/v1/orders/{order_id}", "unmatched"} <= routes
