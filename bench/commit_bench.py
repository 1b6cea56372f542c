"""Offset commits of a batch consumer: a commit after every fetched batch (interval 0) against one commit per
interval, in the same run, each on a broker of its own, with records arriving at a set rate over six partitions.

Prints the commits per 1,000 records, the CPU of this process per record (the paced publisher, the same in
every run, and the consumer) and the broker's CPU per record. Runs alternate between the intervals, so a
machine that drifts during the bench drifts for both.
"""

import asyncio
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.envelopes import bench_envelope
from schemas.envelope import Actor, ActorKind
from schemas.handoff import ResolveHandoff
from schemas.topics import HANDOFF_COMMANDS
from sellmesh.broker import make_broker, publish
from sellmesh.localbroker import LocalBroker
from sellmesh.subscriber import NoDedup, RetryPolicy, subscribe

PARTITIONS = 6
KEYS = 60
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu_seconds(pid: int) -> float:
    """User and system CPU of another process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _command(tenant_id: uuid.UUID, key: str) -> ResolveHandoff:
    return ResolveHandoff(
        **bench_envelope(tenant_id),
        conversation_id=key,
        actor=Actor(kind=ActorKind.OWNER),
    )


class _CountedCommits:
    """Counts the consumer's commit requests while installed (the bench's own process only)."""

    def __init__(self) -> None:
        self.count = 0
        self._original = AIOKafkaConsumer.commit

    def __enter__(self) -> "_CountedCommits":
        original = self._original

        async def counted(consumer: AIOKafkaConsumer, offsets: Any = None) -> None:
            self.count += 1
            await original(consumer, offsets)

        AIOKafkaConsumer.commit = counted
        return self

    def __exit__(self, *_: object) -> None:
        AIOKafkaConsumer.commit = self._original


async def _run(work_dir: Path, *, interval_ms: int, records: int, rate: float) -> dict[str, Any]:
    with LocalBroker(log_path=work_dir / f"commit-bench-{interval_ms}.log") as local:
        admin = AIOKafkaAdminClient(bootstrap_servers=local.bootstrap_servers)
        await admin.start()
        await admin.create_topics([NewTopic(HANDOFF_COMMANDS, num_partitions=PARTITIONS, replication_factor=1)])
        await admin.close()
        handled = 0
        all_handled = asyncio.Event()
        expected = 1  # the warm-up record first, then every measured one too

        async def handler(_: Any) -> None:
            nonlocal handled
            handled += 1
            if handled >= expected:
                all_handled.set()

        broker = make_broker(
            bootstrap_servers=local.bootstrap_servers,
            enable_idempotence=False,
            client_id="commit-bench",
        )
        group = f"commit-bench-{uuid.uuid4().hex[:8]}"
        subscribe(
            broker,
            HANDOFF_COMMANDS,
            group=group,
            name="count",
            handler=handler,
            dedup=NoDedup(),
            retry=RetryPolicy(attempts=1, base_seconds=0.01),
            fetch_max_wait_ms=100,
            commit_interval_ms=interval_ms,
        )
        tenant = uuid.uuid4()
        await broker.start()
        try:
            await publish(broker, HANDOFF_COMMANDS, _command(tenant, "warm-up"), key="warm-up")
            await all_handled.wait()
            all_handled.clear()
            expected = records + 1
            pid = local.pid
            with _CountedCommits() as commits:
                cpu, broker_cpu, started = time.process_time(), _process_cpu_seconds(pid), time.perf_counter()
                for i in range(records):
                    key = f"conversation-{i % KEYS}"
                    await publish(broker, HANDOFF_COMMANDS, _command(tenant, key), key=key)
                    # Paced by the schedule, not by sleeps alone: a slow publish does not slow the rate down.
                    ahead = started + (i + 1) / rate - time.perf_counter()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                await all_handled.wait()
                seconds = time.perf_counter() - started
                await asyncio.sleep(max(0.3, 2 * interval_ms / 1000))  # the last interval's commit goes out
                cpu, broker_cpu = time.process_time() - cpu, _process_cpu_seconds(pid) - broker_cpu
        finally:
            await broker.stop()
    return {
        "name": f"commit {'after every batch' if interval_ms == 0 else f'every {interval_ms} ms'}",
        "requests": records,
        "errors": 0,
        "per_second": round(records / seconds, 1),
        "commits_per_1000": round(commits.count * 1000 / records, 1),
        "cpu_ms_per_record": round(cpu * 1000 / records, 3),
        "broker_cpu_ms_per_record": round(broker_cpu * 1000 / records, 3),
    }


async def commit_intervals(
    *,
    infra_env: dict[str, str],
    work_dir: Path,
    records: int,
    rate: float = 300.0,
    intervals: Sequence[int] = (0, 200),
    rounds: int = 2,
) -> list[dict[str, Any]]:
    """`rounds` runs of each interval, alternating; the first interval is the baseline."""
    del infra_env  # each run starts a broker of its own: a topic read from the start must hold only its records
    rows = []
    for _ in range(rounds):
        for interval_ms in intervals:
            rows.append(await _run(work_dir, interval_ms=interval_ms, records=records, rate=rate))
    return rows


if __name__ == "__main__":
    from bench.load import table

    out = Path("var/bench/work")
    out.mkdir(parents=True, exist_ok=True)
    print(table(asyncio.run(commit_intervals(infra_env={}, work_dir=out, records=int(os.environ.get("N", "3000"))))))
