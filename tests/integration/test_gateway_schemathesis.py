"""The live /openapi.json, fuzzed with schemathesis under a valid owner key: no 5xx, responses match it."""

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import Engine

from sellmesh.db import make_engine, run_migrations
from sellmesh.redis import make_redis
from services.gateway.app import make_gateway
from services.gateway.settings import GatewaySettings
from tests.integration.gateway_app import Published, build_app, seed_tenant

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "6"))


@pytest.fixture(scope="module")
def live_schema(sqlite_url: str, redis_url: str) -> Iterator[tuple[Any, dict[str, str]]]:
    """The schema as the running app serves it, and an owner key of a tenant with one of everything."""
    engine: Engine = make_engine(sqlite_url)
    run_migrations(engine)
    shop = seed_tenant(engine)
    # Created here, first used on schemathesis's one event-loop thread, where it then stays.
    redis = make_redis(redis_url)
    gw = make_gateway(
        engine=engine,
        redis=redis,
        publish_command=Published(),
        settings=GatewaySettings(rate_limit_per_minute=1_000_000),
    )
    yield schemathesis.openapi.from_asgi("/openapi.json", build_app(gw)), {"authorization": f"Bearer {shop.owner_key}"}
    engine.dispose()


def test_the_api_matches_its_openapi_document_and_never_fails_with_5xx(live_schema: tuple[Any, dict[str, str]]) -> None:
    schema, owner = live_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers=owner, checks=[not_a_server_error, response_schema_conformance])

        fuzz()


def test_the_document_describes_every_error_as_a_problem() -> None:
    from sellmesh.contract import openapi_document

    document = openapi_document()
    for path, operations in document["paths"].items():
        assert path.startswith("/v1/"), path
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], (path, status)
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
