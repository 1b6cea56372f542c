"""The whole mesh under load: scripted customers of many shops on WhatsApp, Messenger and Instagram, Stripe
payments, every service a separate `sellmesh run` process; against the ceilings measured in the same run on
the same cores (plain aiokafka over the same hops, bare litellm calls to the offline model).

`python -m bench.mesh_load --rate 100 --customers 300 --scale ingest --replicas 1 2` runs it alone; `make bench`
runs it with the other benches. Latency is webhook accepted (its 200) → the reply's arrival at the fake channel API.
"""

import argparse
import asyncio
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.bare_litellm import bare_litellm, bare_litellm_processes
from bench.customers import Edges, Inbox, Pacer, Tally, play_all
from bench.fake_stripe import FakeStripeApi
from bench.kafka_relay import relay_ceiling
from bench.load import Result, table
from bench.mesh_processes import MeshProcesses, label, mesh_env
from bench.pg_schema import fresh_schema
from bench.round_trips import RoundTrips, read_round_trips
from bench.scenario import Shop, customers, seed_shop
from bench.stages import end_offsets, read_since, stage_latencies, summary
from sellmesh.db import make_engine, run_migrations
from sellmesh.localbroker import LocalBroker
from sellmesh.localredis import LocalRedis
from sellmesh.sandbox.fake_graph import FakeGraphApi
from sellmesh.topic_admin import ensure_topics

SERVICES = ("ingest", "agent", "orders", "payments", "handoff")
WARMUP_CUSTOMERS = 9
# Model calls per answered line in the scripts' mix (a tool call then the reply, or the reply alone).
MODEL_CALLS_PER_LINE = 1.5
Row = dict[str, float | int | str]


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_service(mesh: MeshProcesses) -> dict[str, float]:
    used: dict[str, float] = {}
    for replica in mesh.all:
        if replica.process is not None and replica.alive:
            name = label(replica.service)
            used[name] = used.get(name, 0.0) + cpu_seconds(replica.process.pid)
    return used


@dataclass(frozen=True)
class Run:
    name: str
    tally: Tally
    seconds: float
    cpu: dict[str, float]
    trips: RoundTrips
    stages: dict[str, list[float]]

    def row(self) -> Row:
        result = Result(self.name, self.tally.webhooks, self.seconds, self.tally.latencies_ms, len(self.tally.timeouts))
        p99 = result.percentile(0.99)
        busiest = max(self.cpu, key=lambda s: self.cpu[s]) if self.cpu else ""
        return {
            "name": self.name,
            "requests": result.requests,
            "errors": result.errors,
            "per_second": round(result.per_second, 1),
            "p50_ms": round(result.percentile(0.50), 1),
            "p95_ms": round(result.percentile(0.95), 1),
            "p99_ms": round(p99, 1),
            "busiest": f"{busiest} {self.cpu.get(busiest, 0.0) / self.seconds:.0%} cpu" if busiest else "",
            # All mesh processes' CPU per inbound message: what decides throughput once the cores are full.
            "mesh_cpu_ms": round(1000 * sum(self.cpu.values()) / max(1, self.tally.webhooks), 1),
            # Where that CPU went, service by service: which stage to look at first.
            "cpu_ms_by_service": " ".join(
                f"{service} {1000 * used / max(1, self.tally.webhooks):.1f}"
                for service, used in sorted(self.cpu.items())
            ),
            # Machine-independent: what a change that removes round trips moves, however the cores drifted.
            "redis_cmds_per_msg": round(self.trips.redis_commands / max(1, self.tally.webhooks), 1),
            "pg_xacts_per_msg": round(self.trips.pg_transactions / max(1, self.tally.webhooks), 1),
            "redis_cmds_by_command": self.trips.busiest_commands(self.tally.webhooks),
            # Which stage the latency sits in (bench/stages.py): p50/p95/p99 ms of each.
            "stages_ms": summary(self.stages),
        }


async def play_run(
    *,
    name: str,
    env: Mapping[str, str],
    work_dir: Path,
    shops: list[Shop],
    replicas: Mapping[str, int],
    count: int,
    rate: float | None,
    conversations: int,
    fakes_redis_url: str,
    graph_latency: float = 0.0,
) -> Run:
    """Start the mesh with `replicas`, warm it up, then play `count` customers at `rate` and stop it.

    The fake Graph and Stripe APIs run in this process, not the mesh's: their CPU is not the mesh's, and the
    Stripe sandbox keeps its state in a Redis of its own, so the mesh's Redis counts only the mesh's commands."""
    graph = FakeGraphApi(latency_seconds=graph_latency).start()
    stripe = FakeStripeApi(fakes_redis_url).start()
    fakes = {"META_GRAPH_BASE_URL": graph.base_url, "STRIPE_API_BASE": stripe.api_base}
    mesh = MeshProcesses(env={**env, **fakes}, work_dir=work_dir, replicas=replicas)
    try:
        await asyncio.to_thread(mesh.start)
        inbox = Inbox(graph, asyncio.get_running_loop())
        edges = Edges(
            meta=lambda: f"{mesh.url('ingest')}/webhooks/meta",
            stripe=lambda: f"{mesh.url('payments')}/webhooks/stripe",
            sandbox=lambda: stripe.base_url,
        )
        limits = httpx.Limits(max_connections=conversations * 2, max_keepalive_connections=conversations * 2)
        async with httpx.AsyncClient(limits=limits, timeout=30) as http:
            # Until every consumer has joined its group nothing moves; the first turns also warm the model.
            await play_all(
                customers(shops, WARMUP_CUSTOMERS),
                http=http,
                edges=edges,
                inbox=inbox,
                pacer=Pacer(None),
                conversations=WARMUP_CUSTOMERS,
                within=120,
            )
            trips_before = await asyncio.to_thread(read_round_trips, env["REDIS_URL"], env["DATABASE_URL"])
            window = await end_offsets(env["KAFKA_BOOTSTRAP_SERVERS"])
            cpu_before = cpu_by_service(mesh)
            started = time.perf_counter()
            tally = await play_all(
                customers(shops, count),
                http=http,
                edges=edges,
                inbox=inbox,
                pacer=Pacer(rate),
                conversations=conversations,
            )
            seconds = time.perf_counter() - started
            cpu = {s: used - cpu_before.get(s, 0.0) for s, used in cpu_by_service(mesh).items()}
            # Statistics a second late (read_round_trips): give the last second's transactions time to show.
            await asyncio.sleep(1.5)
            trips = await asyncio.to_thread(read_round_trips, env["REDIS_URL"], env["DATABASE_URL"]) - trips_before
            stages = stage_latencies(await read_since(env["KAFKA_BOOTSTRAP_SERVERS"], window))
        return Run(name, tally, seconds, cpu, trips, stages)
    finally:
        await asyncio.to_thread(mesh.stop)
        graph.stop()
        stripe.stop()


def ratio_rows(rows: list[Row], *, model_rate: float, kafka_rate: float, model_p50: float) -> list[Row]:
    """Each row as a ratio of the ceilings; for mesh rows, the p99 minus the model's share (the mesh's overhead)."""
    for row in rows:
        rate = float(row["per_second"])
        row["vs_litellm"] = round(rate / model_rate, 3) if model_rate else ""
        row["vs_kafka"] = round(rate / kafka_rate, 3) if kafka_rate else ""
        mesh = str(row["name"]).startswith("mesh")
        row["overhead_p99_ms"] = round(float(row["p99_ms"]) - MODEL_CALLS_PER_LINE * model_p50, 1) if mesh else ""
    return rows


async def mesh_load(
    *,
    work_dir: Path,
    customers_per_run: int,
    rate: float,
    scale: str,
    replicas: list[int],
    consumers: list[int],
    shops: int = 6,
    conversations: int = 64,
    graph_latency: float = 0.0,
    colocated: list[int] | None = None,
) -> list[Row]:
    """The ceilings, the mesh at `rate`, then the mesh as fast as it goes with each count of `scale` replicas.

    On a broker and Redis of its own: its topics are laid out as in production before anything else
    creates one (a topic a consumer creates on first use has one partition, and a second replica of its
    group would sit idle).
    """
    with LocalBroker(log_path=work_dir / "mesh-broker.log") as broker, LocalRedis() as redis, LocalRedis() as fakes:
        bootstrap = broker.bootstrap_servers
        topics = await ensure_topics(bootstrap, replication_factor=1)
        if not topics.ok:
            raise RuntimeError(f"topics not laid out: {topics.mismatched or topics.failed}")
        infra_env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_ENABLE_IDEMPOTENCE": "false", "REDIS_URL": redis.url}
        calls = max(400, customers_per_run)
        one_process = await bare_litellm(calls, concurrency=8)
        # What the goal compares with: bare calls on every core, as the mesh's processes share them all.
        model = await bare_litellm_processes(os.cpu_count() or 1, calls * (os.cpu_count() or 1), concurrency=8)
        kafka = await relay_ceiling(
            bootstrap=bootstrap, work_dir=work_dir, messages=customers_per_run * 3, rates=[rate, None]
        )
        runs = await mesh_runs(
            infra_env=infra_env,
            fakes_redis_url=fakes.url,
            work_dir=work_dir,
            customers_per_run=customers_per_run,
            rate=rate,
            scale=scale,
            replicas=replicas,
            consumers=consumers,
            shops=shops,
            conversations=conversations,
            graph_latency=graph_latency,
            colocated=colocated or [],
        )
        # The same ceiling again once the mesh is done: this machine's speed drifts within minutes, and the
        # mesh runs sit between the two. The ratios are against their mean; the two rows show the drift.
        model_after = await bare_litellm_processes(os.cpu_count() or 1, calls * (os.cpu_count() or 1), concurrency=8)
        model_after = replace(model_after, name=f"{model_after.name}, after the mesh runs")
    rows: list[Row] = [
        _plain_row(one_process),
        _plain_row(model),
        *(_plain_row(k) for k in kafka),
        *(run.row() for run in runs),
        _plain_row(model_after),
    ]
    return ratio_rows(
        rows,
        model_rate=bracketed_rate(model, model_after),
        kafka_rate=kafka[-1].per_second,
        model_p50=model.percentile(0.5),
    )


def bracketed_rate(before: Result, after: Result) -> float:
    """The model's ceiling for runs made between two measurements of it: their mean."""
    return (before.per_second + after.per_second) / 2


async def mesh_runs(
    *,
    infra_env: dict[str, str],
    fakes_redis_url: str,
    work_dir: Path,
    customers_per_run: int,
    rate: float,
    scale: str,
    replicas: list[int],
    consumers: list[int],
    shops: int,
    conversations: int,
    graph_latency: float,
    colocated: list[int],
) -> list[Run]:
    one_each = dict.fromkeys(SERVICES, 1)
    plans: list[tuple[str, dict[str, int], float | None, int, dict[str, str]]] = [
        (f"mesh: at {rate:g} msgs/s, 1 replica each", one_each, rate, max(16, int(rate)), {}),
    ]
    plans += [
        (f"mesh: as fast as it goes, {n} {scale} replica(s)", {**one_each, scale: n}, None, conversations, {})
        for n in replicas
    ]
    # Consumers per group and topic inside one process: partitions handled concurrently, no extra processes.
    plans += [
        (
            f"mesh: as fast as it goes, {n} consumers per group and topic",
            one_each,
            None,
            conversations,
            {"KAFKA_CONSUMERS_PER_SUBSCRIPTION": str(n)},
        )
        for n in consumers
        if n > 1
    ]
    # Every service in each of n processes (`sellmesh run ingest agent ...`): the same hops through the broker,
    # but one process's caches, loop and HTTP server instead of five.
    plans += [
        (
            f"mesh: as fast as it goes, all five services in {n} process(es)",
            {" ".join(SERVICES): n},
            None,
            conversations,
            {},
        )
        for n in colocated
    ]
    runs: list[Run] = []
    for name, layout, pace, at_once, extra_env in plans:
        # A schema of its own per run: tables that grew in an earlier run would make every later one slower.
        with fresh_schema() as database_url:
            engine = make_engine(database_url)
            await asyncio.to_thread(run_migrations, engine)
            seeded = [await asyncio.to_thread(seed_shop, engine, name=f"Load Shop {i}") for i in range(shops)]
            engine.dispose()
            env = mesh_env(infra_env, database_url=database_url, graph_url="", work_dir=work_dir)
            runs.append(
                await play_run(
                    name=name,
                    env={**env, **extra_env},
                    work_dir=work_dir,
                    shops=seeded,
                    replicas=layout,
                    count=customers_per_run,
                    rate=pace,
                    conversations=at_once,
                    fakes_redis_url=fakes_redis_url,
                    graph_latency=graph_latency,
                )
            )
    return runs


def _plain_row(result: Result) -> Row:
    return {
        "name": result.name,
        "requests": result.requests,
        "errors": result.errors,
        "per_second": round(result.per_second, 1),
        "p50_ms": round(result.percentile(0.50), 1),
        "p95_ms": round(result.percentile(0.95), 1),
        "p99_ms": round(result.percentile(0.99), 1),
        "busiest": "",
        "mesh_cpu_ms": "",
        "cpu_ms_by_service": "",
        "redis_cmds_per_msg": "",
        "pg_xacts_per_msg": "",
        "redis_cmds_by_command": "",
        "stages_ms": "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0, help="inbound messages per second for the paced run")
    parser.add_argument("--customers", type=int, default=200, help="customers per run (about 3 lines each)")
    parser.add_argument("--scale", default="ingest", choices=SERVICES, help="the service whose replicas vary")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="replica counts of --scale")
    parser.add_argument(
        "--consumers", type=int, nargs="+", default=[4], help="consumers per consumer group and topic to try besides 1"
    )
    parser.add_argument(
        "--conversations", type=int, default=64, help="customers at a time in the as-fast-as-it-goes runs"
    )
    parser.add_argument(
        "--colocated",
        type=int,
        nargs="*",
        default=[],
        help="also run every service together in this many processes (each count a run of its own)",
    )
    parser.add_argument(
        "--graph-latency-ms",
        type=float,
        default=0.0,
        help="how long the fake channel API takes to answer each send (shows replicas scaling a waiting service)",
    )
    args = parser.parse_args()
    work_dir = Path("var/bench/mesh")
    work_dir.mkdir(parents=True, exist_ok=True)
    rows = asyncio.run(
        mesh_load(
            work_dir=work_dir,
            customers_per_run=args.customers,
            rate=args.rate,
            scale=args.scale,
            replicas=args.replicas,
            consumers=args.consumers,
            conversations=args.conversations,
            graph_latency=args.graph_latency_ms / 1000,
            colocated=args.colocated,
        )
    )
    print(table(rows))
    report = {"at": datetime.now(UTC).isoformat(), "cores": os.cpu_count(), "load": os.getloadavg(), "rows": rows}
    (Path("var/bench") / "mesh_load.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
