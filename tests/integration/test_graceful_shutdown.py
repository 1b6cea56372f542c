"""SIGTERM in the middle of a stream: the worker drains and exits 0, and its replacement loses nothing and
doubles nothing (one processed row, one order and one outcome event per command)."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy
from faststream.kafka import KafkaBroker

from schemas.orders import CreateDraft
from schemas.topics import ORDERS_COMMANDS, ORDERS_EVENTS
from sellmesh.broker import publish
from sellmesh.db import make_engine
from sellmesh.localbroker import LocalBroker, free_port
from tests.builders import order_command, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SELLMESH = str(Path(sys.executable).parent / "sellmesh")
COMMANDS = 150
# Kubernetes gives a pod 30 s after SIGTERM; the drain must fit well inside that.
DRAIN_BOUND_SECONDS = 15.0


def start_orders(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen([SELLMESH, "run", "orders"], env={**os.environ, **env}, stdout=sink, stderr=sink)


def wait_ready(base_url: str, process: subprocess.Popen[bytes], *, timeout: float = 30.0) -> list[int]:
    """Ready means both consumers of the group have their assignment, not just that HTTP answers.

    Returns the /readyz statuses seen on the way.
    """
    statuses: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"worker exited with {process.returncode}"
        try:
            response = httpx.get(f"{base_url}/readyz", timeout=1)
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        statuses.append(response.status_code)
        if response.status_code == 200:
            assert None not in response.json()["consumers"].values()
            return statuses
        time.sleep(0.1)
    raise TimeoutError("worker never became ready")


def processed(db_url: str, tenant_id: uuid.UUID) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            query = sqlalchemy.text("SELECT count(*) FROM orders_processed_commands WHERE tenant_id = :t")
            return int(conn.execute(query, {"t": tenant_id}).scalar_one())
    except sqlalchemy.exc.ProgrammingError:  # the worker has not created its tables yet
        return 0
    finally:
        engine.dispose()


def orders_of(db_url: str, tenant_id: uuid.UUID) -> Counter[str]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text("SELECT order_id FROM orders_orders WHERE tenant_id = :t"), {"t": tenant_id}
            )
            return Counter(str(row[0]) for row in rows)
    finally:
        engine.dispose()


async def publish_commands(bootstrap: str, commands: list[CreateDraft]) -> None:
    broker = KafkaBroker(bootstrap_servers=bootstrap, enable_idempotence=False)
    await broker.connect()
    try:
        await asyncio.gather(*(publish(broker, ORDERS_COMMANDS, c, key=str(c.order_id)) for c in commands))
    finally:
        await broker.stop()


def wait_for(condition: str, check: Callable[[], bool], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{condition} not reached in {timeout}s")
        time.sleep(0.05)


def test_sigterm_mid_stream_drains_and_a_restart_loses_and_doubles_nothing(
    tmp_path: Path, redis_url: str, pg_schema_url: str
) -> None:
    tenant_id = uuid.uuid4()
    commands = [order_command(CreateDraft, tenant_id, uuid.uuid4()) for _ in range(COMMANDS)]
    # A broker of its own: no consumer of another test may join this test's `orders` group.
    with LocalBroker(log_path=tmp_path / "broker.log") as broker:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",
            "REDIS_URL": redis_url,
            "DATABASE_URL": pg_schema_url,
            "SELLMESH_VAR_DIR": str(tmp_path / "var"),
            "SELLMESH_LOG_LEVEL": "INFO",
        }
        ports = free_port(), free_port()
        log = tmp_path / "orders.log"
        first = start_orders({**env, "SELLMESH_HTTP_PORT": str(ports[0])}, log)
        second: subprocess.Popen[bytes] | None = None
        try:
            # HTTP answers at once; readiness waits for the group join.
            assert 503 in wait_ready(f"http://127.0.0.1:{ports[0]}", first)
            asyncio.run(publish_commands(broker.bootstrap_servers, commands))
            wait_for("first outcomes", lambda: processed(pg_schema_url, tenant_id) >= 20, timeout=20)
            done_at_sigterm = processed(pg_schema_url, tenant_id)
            first.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            # The replacement starts at once, as in a rolling update; it takes over once the first has left.
            second = start_orders({**env, "SELLMESH_HTTP_PORT": str(ports[1])}, log)
            assert first.wait(timeout=DRAIN_BOUND_SECONDS + 5) == 0, log.read_text()[-3000:]
            assert time.monotonic() - stopped_at < DRAIN_BOUND_SECONDS
            assert done_at_sigterm < COMMANDS - 10, "the stream ended before SIGTERM: nothing was in flight"

            wait_ready(f"http://127.0.0.1:{ports[1]}", second)
            wait_for("every command", lambda: processed(pg_schema_url, tenant_id) == COMMANDS, timeout=30)
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=DRAIN_BOUND_SECONDS + 5) == 0
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait()

        outcomes = Counter(
            json.loads(record.value)["causation_id"]
            for record in asyncio.run(read_topic(broker.bootstrap_servers, ORDERS_EVENTS))
            if json.loads(record.value)["tenant_id"] == str(tenant_id)
        )
    assert processed(pg_schema_url, tenant_id) == COMMANDS
    assert orders_of(pg_schema_url, tenant_id) == Counter({str(c.order_id): 1 for c in commands})
    assert outcomes == Counter({str(c.event_id): 1 for c in commands})
