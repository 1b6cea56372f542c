"""`make schemas`: exports each topic's JSON Schema, the AsyncAPI document FastStream generates, and the
owners' API OpenAPI document (`docs/openapi.json`, the same one the gateway serves at /openapi.json).

Both are committed; `python -m sellmesh.contract check` (and a test) fails when they are stale.
"""

import json
import sys
from pathlib import Path
from typing import Any

import httpx
from faststream.specification import AsyncAPI

from schemas.registry import TOPIC_SCHEMAS, adapter_for
from schemas.topics import dlq_of
from sellmesh.broker import MeshBroker, make_broker
from sellmesh.db import make_engine
from sellmesh.infra import Endpoints
from sellmesh.redis import make_redis
from sellmesh.service import MeshContext, build_services
from sellmesh.settings import MeshSettings
from sellmesh.subscriber import RedisDedup, RetryPolicy

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "schemas" / "json"
ASYNCAPI_FILE = ROOT / "docs" / "asyncapi.json"
OPENAPI_FILE = ROOT / "docs" / "openapi.json"


def topic_schemas() -> dict[str, dict[str, Any]]:
    return {topic: adapter_for(topic).json_schema(mode="serialization") for topic in TOPIC_SCHEMAS}


def document_broker() -> MeshBroker:
    """The real wiring of every service on a broker that never connects, so the document matches the code."""
    from sellmesh.mesh import SERVICE_NAMES, load_service

    broker = make_broker(bootstrap_servers="kafka:9092", enable_idempotence=True, client_id="doc")
    redis = make_redis("redis://localhost:6379/0")
    ctx = MeshContext(
        settings=MeshSettings(),
        endpoints=Endpoints("kafka:9092", True, "redis://localhost:6379/0", "sqlite://", False),
        broker=broker,
        engine=make_engine("sqlite://"),
        redis=redis,
        dedup=RedisDedup(redis, ttl_seconds=1),
        retry=RetryPolicy(),
        http=httpx.AsyncClient(),
    )
    build_services(ctx, [load_service(name) for name in SERVICE_NAMES])
    for topic, schema in TOPIC_SCHEMAS.items():
        broker.publisher(
            topic,
            schema=schema,
            title=f"{topic}:publish",
            description=f"Messages on {topic}; failures go to {dlq_of(topic)}.",
        )
    return broker


def asyncapi_document() -> dict[str, Any]:
    spec = AsyncAPI(document_broker(), title="sellmesh", version="1.0.0", schema_version="3.0.0")
    document: dict[str, Any] = json.loads(spec.to_specification().to_json())
    return document


def openapi_document() -> dict[str, Any]:
    """The owners' API as served at /openapi.json, built from the real routes over connections never opened."""
    from services.gateway.api import openapi_document as gateway_openapi
    from services.gateway.app import make_gateway
    from services.gateway.settings import GatewaySettings

    async def never_publish(topic: str, command: object, key: str) -> None:
        raise RuntimeError("the contract export publishes nothing")

    gateway = make_gateway(
        engine=make_engine("sqlite://"),
        redis=make_redis("redis://localhost:6379/0"),
        publish_command=never_publish,
        settings=GatewaySettings(),
    )
    return gateway_openapi(gateway)


def rendered() -> dict[Path, str]:
    files = {
        SCHEMA_DIR / f"{topic}.json": json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for topic, schema in topic_schemas().items()
    }
    files[ASYNCAPI_FILE] = json.dumps(asyncapi_document(), indent=2, sort_keys=True) + "\n"
    files[OPENAPI_FILE] = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    return files


def stale_files() -> list[Path]:
    return [path for path, text in rendered().items() if not path.exists() or path.read_text() != text]


def main(argv: list[str]) -> int:
    action = argv[0] if argv else "check"
    if action == "write":
        for path, text in rendered().items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return 0
    stale = stale_files()
    for path in stale:
        print(f"stale: {path.relative_to(ROOT)} (run `make schemas`)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
