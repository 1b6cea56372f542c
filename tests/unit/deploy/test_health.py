"""Readiness: a process is ready only while every consumer has joined its group and it is not draining."""

import json

from starlette.requests import Request

from sellmesh.broker import MeshBroker, make_broker
from sellmesh.health import Health

REQUEST = Request({"type": "http", "method": "GET", "path": "/readyz", "headers": []})


def broker() -> MeshBroker:
    return make_broker(bootstrap_servers="kafka:9092", enable_idempotence=True, client_id="health")


async def test_a_consumer_that_has_not_joined_its_group_keeps_the_process_unready() -> None:
    mesh_broker = broker()
    mesh_broker.subscriber("orders.commands.v1", group_id="orders")(lambda _: None)
    mesh_broker.running = True
    health = Health(mesh_broker, ["orders"])
    health.started = True
    response = await health.readyz(REQUEST)
    assert response.status_code == 503
    assert json.loads(bytes(response.body))["consumers"] == {"orders:orders.commands.v1": None}
    assert (await health.healthz(REQUEST)).status_code == 200


async def test_a_started_process_is_ready_until_it_starts_draining() -> None:
    mesh_broker = broker()
    health = Health(mesh_broker, ["gateway"])
    assert (await health.readyz(REQUEST)).status_code == 503
    mesh_broker.running = True
    assert (await health.readyz(REQUEST)).status_code == 503, "start hooks have not run yet"
    health.started = True
    assert (await health.readyz(REQUEST)).status_code == 200
    health.draining = True
    response = await health.readyz(REQUEST)
    assert response.status_code == 503
    assert json.loads(bytes(response.body))["draining"] is True
