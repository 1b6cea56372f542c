"""A real Prometheus scrapes the running mesh under a little traffic: no dashboard panel and no alert is blind."""

import asyncio
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from schemas.envelope import Actor, ActorKind
from schemas.orders import CloseOrder, OrderSnapshot, OrderState
from schemas.topics import ORDERS_COMMANDS
from sellmesh.broker import publish
from sellmesh.localbroker import free_port, wait_for_port
from sellmesh.mesh import Mesh
from services.orders.query import latest_order_for_conversation
from tests.e2e.conftest import Shop, eventually, new_customer
from tests.e2e.test_payments import SESSION_IN_LINK, conversation_of
from tests.prometheus_tools import GRAFANA_DASHBOARDS, RULE_FILES, alert_rules, as_prometheus_sees_it, signal_of, tool

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="package")]

FORBIDDEN_LABELS = re.compile(r"tenant|customer|conversation|order_id|event_id|correlation|message_id|phone|email")


@pytest.fixture
def prometheus(mesh: Mesh, tmp_path: Path) -> Iterator[str]:
    """Prometheus scraping this mesh's /metrics every second, with the project's alert rules loaded."""
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in RULE_FILES],
        "scrape_configs": [
            {
                "job_name": "sellmesh",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{mesh.settings.sellmesh_http_port}"], "labels": {"service": "mesh"}}
                ],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            str(tool("prometheus")),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=15, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def some_traffic(shop: Shop, mesh: Mesh) -> None:
    """A sale paid on the checkout page, a customer asking for a person, refusals at every edge, a poison message."""
    assert mesh.ctx is not None
    buyer, asker = new_customer(), new_customer()
    await shop.say(buyer, "I want two espresso beans")
    await shop.say(asker, "can I talk to a person?")
    await shop.wait_for_replies(buyer, 1)
    await shop.say(buyer, "how do I pay?")
    replies = await shop.wait_for_replies(buyer, 3)
    link = next(SESSION_IN_LINK.search(r["text"]) for r in replies if SESSION_IN_LINK.search(r["text"]))
    assert link is not None
    paid = await shop.http.post(f"{shop.base_url}/sandbox/stripe/_test/sessions/{link.group(1)}/pay")
    assert paid.status_code == 200

    async def order() -> OrderSnapshot | None:
        return latest_order_for_conversation(shop.engine, shop.tenant_id, conversation_of(shop, buyer))

    settled = await eventually(order, lambda o: o is not None and o.state is OrderState.PAID, within=20)
    # An owner closing an order that was never fulfilled: orders refuses it (invalid_transition).
    close = CloseOrder(
        event_id=uuid.uuid4(),
        tenant_id=shop.tenant_id,
        correlation_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        producer="gateway",
        order_id=settled.order_id,
        actor=Actor(kind=ActorKind.OWNER, id="owner"),
    )
    await publish(mesh.ctx.broker, ORDERS_COMMANDS, close, key=str(settled.order_id))
    await mesh.ctx.broker.publish(b"not json", topic=ORDERS_COMMANDS, key=b"poison")

    assert (await shop.post_webhook(shop.body(buyer, "hi"), signature="sha256=" + "0" * 64)).status_code == 401
    stripe = await shop.http.post(
        f"{shop.base_url}/webhooks/stripe", content=b"{}", headers={"stripe-signature": "t=1,v1=00"}
    )
    assert stripe.status_code == 401
    for key in (shop.owner_key, shop.owner_key + "x"):
        await shop.http.get(f"{shop.base_url}/v1/me", headers={"authorization": f"Bearer {key}"})


async def query(http: httpx.AsyncClient, base: str, promql: str) -> list[dict[str, Any]]:
    response = await http.get(f"{base}/api/v1/query", params={"query": promql})
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", f"{promql}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def wait_for_series(http: httpx.AsyncClient, base: str, promqls: list[str], *, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while missing := [promql for promql in promqls if not await query(http, base, promql)]:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no series after {within} s for: {missing}")
        await asyncio.sleep(0.5)


def panel_queries() -> list[tuple[str, str]]:
    queries = []
    for path in GRAFANA_DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                queries.append((f"{path.stem}: {panel['title']}", as_prometheus_sees_it(target["expr"])))
    return queries


def alert_signals() -> list[tuple[str, str]]:
    return [(str(rule["alert"]), signal_of(str(rule["expr"]))) for rule in alert_rules()]


async def test_every_dashboard_panel_and_alert_signal_returns_data(prometheus: str, shop: Shop, mesh: Mesh) -> None:
    await some_traffic(shop, mesh)
    async with httpx.AsyncClient(timeout=10) as http:
        # The paid order, the refusal and the poison message have all been seen and scraped.
        checks = [
            'sellmesh_orders_transitions_total{change="paid"}',
            'sellmesh_orders_outcomes_total{type="command_rejected",detail="invalid_transition"}',
            'sellmesh_messages_dead_lettered_total{group="orders",kind="invalid"} > 0',
            'sellmesh_dlq_messages{topic="orders.commands.v1.dlq"} > 0',
            'sellmesh_consumer_lag{group="orders",topic="orders.commands.v1"}',
            "sellmesh_handoffs_opened_total",
        ]
        await wait_for_series(http, prometheus, checks, within=20)
        await asyncio.sleep(2)  # two more scrapes, so every rate() over the load has two samples

        empty = [
            f"{name}: {expr}"
            for name, expr in [*panel_queries(), *alert_signals()]
            if not await query(http, prometheus, expr)
        ]
        assert not empty, "these return no series:\n" + "\n".join(empty)

        series = (
            await http.get(f"{prometheus}/api/v1/series", params={"match[]": '{__name__=~"sellmesh_.+"}'})
        ).json()["data"]
        labels = {name for s in series for name in s}
        assert not {name for name in labels if FORBIDDEN_LABELS.search(name)}
