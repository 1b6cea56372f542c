"""What the deploy checks compare against: the files under deploy/, and the consumer groups the code wires."""

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from faststream.kafka.subscriber.usecase import LogicSubscriber

from sellmesh.broker import make_broker
from sellmesh.db import make_engine
from sellmesh.infra import Endpoints
from sellmesh.mesh import SERVICE_NAMES, load_service
from sellmesh.redis import make_redis
from sellmesh.service import MeshContext, build_services
from sellmesh.settings import MeshSettings
from sellmesh.subscriber import RedisDedup, RetryPolicy

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def consumers_of(service: str, settings: MeshSettings | None = None) -> set[tuple[str, str]]:
    """(consumer group, topic) of every subscriber `service` registers, from its real wiring on a broker
    that never connects."""
    return {(group, topic) for group, topics, _ in subscribers_of(service, settings) for topic in topics}


def subscribers_of(service: str, settings: MeshSettings | None = None) -> list[tuple[str, tuple[str, ...], int]]:
    """(consumer group, topics, consumers) of each subscriber `service` registers on a broker that never
    connects."""
    broker = make_broker(bootstrap_servers="kafka:9092", enable_idempotence=True, client_id="deploy")
    redis = make_redis("redis://localhost:6379/0")
    ctx = MeshContext(
        settings=settings or MeshSettings(),
        endpoints=Endpoints("kafka:9092", True, "redis://localhost:6379/0", "sqlite://", False),
        broker=broker,
        engine=make_engine("sqlite://"),
        redis=redis,
        dedup=RedisDedup(redis, ttl_seconds=1),
        retry=RetryPolicy(),
        http=httpx.AsyncClient(),
    )
    build_services(ctx, [load_service(service)])
    ctx.engine.dispose()
    found = []
    for sub in broker.subscribers:
        assert isinstance(sub, LogicSubscriber)
        workers = len(getattr(sub, "consumer_subgroup", None) or ()) or getattr(sub, "max_workers", 1)
        found.append((str(sub.group_id), tuple(sub.topic_names), int(workers)))
    return found


@pytest.fixture(scope="session")
def wiring() -> dict[str, set[tuple[str, str]]]:
    return {service: consumers_of(service) for service in SERVICE_NAMES}


@pytest.fixture(scope="session")
def manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in load_all(K8S / name)]
