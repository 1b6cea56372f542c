"""Liveness and readiness of one process, for orchestrators: `/healthz` and `/readyz` on its HTTP port."""

from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import LogicSubscriber
from starlette.requests import Request
from starlette.responses import JSONResponse

from sellmesh.rebalance import consumers_of


class Health:
    """Alive while the event loop answers; ready while every consumer has its group assignment.

    aiokafka's consumer `start()` returns only after the first assignment of its group, and FastStream
    marks a subscriber running only after that start, so "running with a consumer" means "assigned"
    (possibly zero partitions, when there are more replicas than partitions: idle but correct).
    """

    def __init__(self, broker: KafkaBroker, services: list[str]) -> None:
        self.broker = broker
        self.services = services
        # Set once the services' start hooks have run (a rebuilt cache, a warmed-up model).
        self.started = False
        # Set when shutdown begins, so traffic moves elsewhere while in-flight work finishes.
        self.draining = False

    def consumers(self) -> dict[str, list[str] | None]:
        """Each subscriber's partitions, or None while it has not joined its group."""
        found: dict[str, list[str] | None] = {}
        for sub in self.broker.subscribers:
            if not isinstance(sub, LogicSubscriber):
                continue
            title = f"{sub.group_id}:{','.join(sub.topic_names)}"
            consumers = consumers_of(sub)
            if not sub.running or not consumers:
                found[title] = None
                continue
            found[title] = sorted(f"{tp.topic}/{tp.partition}" for c in consumers for tp in c.assignment())
        return found

    def ready(self) -> tuple[bool, dict[str, Any]]:
        consumers = self.consumers()
        assigned = all(v is not None for v in consumers.values())
        ok = self.started and not self.draining and self.broker.running and assigned
        body = {"ready": ok, "started": self.started, "draining": self.draining, "consumers": consumers}
        return ok, {**body, "services": self.services}

    async def healthz(self, _: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "services": self.services})

    async def readyz(self, _: Request) -> JSONResponse:
        ok, body = self.ready()
        return JSONResponse(body, status_code=200 if ok else 503)
