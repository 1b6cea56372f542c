"""Under load and faults, nothing is lost and nothing is sent twice.

The mesh runs as separate `sellmesh run` processes (two agent replicas) on a broker, Redis and PostgreSQL
schema of its own, while scripted customers of two shops write on WhatsApp, Messenger and Instagram and pay
through Stripe. Meanwhile workers (ingest among them, mid-send) are killed with SIGKILL and restarted, Redis
restarts, every PostgreSQL connection of the mesh is cut, the broker stalls (SIGSTOP, then SIGCONT: a network
partition or a long pause, as every client sees it), the channel API answers 5xx then 429 for a while, and a
third of the webhooks and every Stripe event arrive twice. Afterwards the database, the topics and the fake
channel API must agree.
"""

import asyncio
import contextlib
import os
import random
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy
from sqlalchemy import Engine

from bench.customers import Edges, Inbox, Pacer, play_all
from bench.mesh_processes import MeshProcesses, mesh_env
from bench.scenario import customers, seed_shop
from sellmesh.db import make_engine, run_migrations
from sellmesh.localbroker import LocalBroker
from sellmesh.localredis import LocalRedis
from sellmesh.sandbox.fake_graph import RATE_LIMITED, SERVER_ERROR, FakeGraphApi
from sellmesh.topic_admin import ensure_topics
from tests.conftest import PG_URL, _require
from tests.faults import handover, invariants
from tests.faults.quiet import wait_until_quiet

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPLICAS = {"ingest": 1, "agent": 2, "orders": 1, "payments": 1, "handoff": 1}
CUSTOMERS = 18
STALL_SECONDS = 12
SEED = int(os.environ.get("SELLMESH_FAULT_SEED", random.randrange(10**6)))


@contextlib.contextmanager
def private_schema() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL schema; yields its URL (tagged with an application name) and that name."""
    _require("PostgreSQL", "127.0.0.1", 5432)
    schema = f"sm_faults_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}&application_name={schema}", schema
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def cut_connections(admin: Engine, application_name: str) -> int:
    """Terminate every PostgreSQL backend the mesh has open: what a database failover looks like to it."""
    query = sqlalchemy.text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :name"
    )
    with admin.begin() as conn:
        return int(conn.execute(query, {"name": application_name}).scalar_one())


async def inject_faults(
    *,
    mesh: MeshProcesses,
    graph: FakeGraphApi,
    inbox: Inbox,
    redis: LocalRedis,
    broker: LocalBroker,
    admin: Engine,
    app_name: str,
    rng: random.Random,
) -> list[str]:
    """One fault after another while the load runs; crashed workers restart in the background meanwhile."""
    done: list[str] = []
    restarts: list[asyncio.Task[None]] = []

    async def crash(service: str) -> None:
        replica = rng.choice(mesh.of(service))
        await asyncio.to_thread(mesh.kill, replica)
        done.append(f"kill -9 {replica.name}")
        restarts.append(asyncio.create_task(asyncio.to_thread(mesh.restart, replica)))

    await crash("agent")
    # Killed the moment a send reaches the channel, the sender most likely dies between the Graph API's 200
    # and recording it: redelivery must give that send up as in doubt (a person takes the customer over),
    # never post it again.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(inbox.wait_total(inbox.total + 1), timeout=10)
    await crash("ingest")
    graph.take_down(SERVER_ERROR)
    await asyncio.sleep(2)
    graph.take_down(RATE_LIMITED)
    await asyncio.sleep(2)
    graph.bring_up()
    done.append("channel API: 2 s of 500, then 2 s of 429")
    redis.stop()
    await asyncio.sleep(1)
    redis.start()
    done.append("redis restarted")
    # Past the consumers' 10 s session timeout: the broker, once it runs again, finds every member late and
    # rebalances each group, while producers and the edges' publishes waited without an answer. Every client
    # must carry on from where it was.
    os.kill(broker.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(STALL_SECONDS)
    finally:
        os.kill(broker.pid, signal.SIGCONT)
    done.append(f"broker stalled {STALL_SECONDS} s")
    for _ in range(3):
        cut = await asyncio.to_thread(cut_connections, admin, app_name)
        done.append(f"{cut} PostgreSQL connections cut")
        await asyncio.sleep(0.5)
    # Not ingest again: its restart may still be under way, and two restarts of one replica would race.
    await crash(rng.choice(["orders", "payments", "handoff"]))
    await asyncio.gather(*restarts)
    return done


async def test_under_crashes_and_outages_every_message_is_answered_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    (tmp_path / "redis").mkdir()
    with (
        LocalBroker(log_path=tmp_path / "broker.log") as broker,
        LocalRedis(data_dir=tmp_path / "redis") as redis,
        private_schema() as (database_url, app_name),
    ):
        engine = make_engine(database_url)
        admin = make_engine(PG_URL)
        await asyncio.to_thread(run_migrations, engine)
        shops = [await asyncio.to_thread(seed_shop, engine, name=f"Fault Shop {i}") for i in range(2)]
        tenants = [shop.tenant_id for shop in shops]
        infra = {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",
            "REDIS_URL": redis.url,
        }
        graph = FakeGraphApi().start()
        env = mesh_env(infra, database_url=database_url, graph_url=graph.base_url, work_dir=tmp_path)
        env |= {"SELLMESH_RETRY_BASE_SECONDS": "0.05", "SELLMESH_LOG_LEVEL": "INFO"}
        mesh = MeshProcesses(env=env, work_dir=tmp_path, replicas=REPLICAS)
        # Laid out as in production: topics a consumer creates on first use get one partition, and a
        # second replica of a group would then sit idle.
        assert (await ensure_topics(broker.bootstrap_servers, replication_factor=1)).ok
        try:
            await asyncio.to_thread(mesh.start)
            people = customers(shops, CUSTOMERS)
            conversations = await asyncio.to_thread(handover.customers_by_conversation, engine, people)
            edges = Edges(
                meta=lambda: f"{mesh.url('ingest')}/webhooks/meta",
                stripe=lambda: f"{mesh.url('payments')}/webhooks/stripe",
                sandbox=lambda: mesh.url("handoff"),
            )
            inbox = Inbox(graph, asyncio.get_running_loop())
            stand_down = asyncio.create_task(handover.stand_down_in_doubt(engine, conversations, inbox))
            async with httpx.AsyncClient(timeout=10) as http:
                load = asyncio.create_task(
                    play_all(
                        people,
                        http=http,
                        edges=edges,
                        inbox=inbox,
                        pacer=Pacer(6),
                        conversations=8,
                        duplicate_every=3,
                        within=60,
                    )
                )
                try:
                    # Faults start once replies flow: before that, consumers are still joining and nothing moves.
                    await asyncio.wait_for(inbox.wait_total(8), timeout=90)
                    faults = await inject_faults(
                        mesh=mesh,
                        graph=graph,
                        inbox=inbox,
                        redis=redis,
                        broker=broker,
                        admin=admin,
                        app_name=app_name,
                        rng=rng,
                    )
                    tally = await load
                finally:
                    load.cancel()
                    stand_down.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stand_down  # re-raises whatever stopped it early
            still_moving = await wait_until_quiet(
                bootstrap=broker.bootstrap_servers, engine=engine, redis_url=redis.url, within=30
            )
            orders_events, payments_events = await invariants.topic_records(broker.bootstrap_servers)
            in_doubt = handover.in_doubt_customers(engine, conversations)
            problems = [
                *tally.timeouts,
                *still_moving,
                *invariants.every_reply_arrived_once(inbox, people, handed_over=in_doubt),
                *invariants.every_inbound_answered_or_handed_over(engine, tenants),
                *invariants.sends_match_arrivals(
                    invariants.arrivals_of(inbox), invariants.read_send_log(engine, tenants)
                ),
                *invariants.orders_match_their_events(engine, tenants, orders_events),
                *invariants.payments_match_their_events(engine, tenants, payments_events, buyers=len(tally.paid)),
                *await invariants.dead_letters(broker.bootstrap_servers, tenants),
            ]
            handed_over = f"handed over (a send in doubt): {sorted(in_doubt)}"
            assert not problems, f"seed {SEED}, faults {faults}, {handed_over}:\n" + "\n".join(problems)
        finally:
            await asyncio.to_thread(mesh.stop)
            graph.stop()
            engine.dispose()
            admin.dispose()
