"""The raw ceiling: plain aiokafka relaying messages over the same hops as a reply (webhook → channel.raw →
normalizer → channel.inbound → agent → channel.outbound → sender), each relay in its own process, through
the same broker. No decoding, no database, no Redis, no model: what the broker and client alone cost.

`python -m bench.kafka_relay BOOTSTRAP SOURCE TARGET GROUP` runs one relay hop.
"""

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.load import Result
from sellmesh.settings import MeshSettings

PADDING = "x" * 900  # about the size of an enveloped inbound message
# The mesh's own default (KAFKA_FETCH_MAX_WAIT_MS), so the ceiling's hops wait on the broker as the mesh's do.
FETCH_MAX_WAIT_MS = MeshSettings.model_fields["kafka_fetch_max_wait_ms"].default


async def relay(bootstrap: str, source: str, target: str, group: str) -> None:
    """Consume `source`, produce each record to `target`, commit after the batch is acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await producer.start()
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            sent = [
                await producer.send(target, value=record.value, key=record.key)
                for records in batches.values()
                for record in records
            ]
            if sent:
                await asyncio.gather(*sent)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def _sink_until(consumer: AIOKafkaConsumer, ids: set[str], latencies: list[float]) -> None:
    while ids:
        for records in (await consumer.getmany(timeout_ms=100)).values():
            for record in records:
                message = json.loads(record.value or b"{}")
                if message["id"] in ids:
                    ids.discard(message["id"])
                    latencies.append((time.time() - message["at"]) * 1000)


async def _send(producer: AIOKafkaProducer, topic: str, ids: list[str], rate: float | None) -> None:
    interval = 1.0 / rate if rate else 0.0
    started = time.monotonic()
    acks = []
    for i, message_id in enumerate(ids):
        if interval:
            await asyncio.sleep(max(0.0, started + i * interval - time.monotonic()))
        body = json.dumps({"id": message_id, "at": time.time(), "padding": PADDING}).encode()
        acks.append(await producer.send(topic, value=body, key=str(i % 64).encode()))
    await asyncio.gather(*acks)


async def _through(
    producer: AIOKafkaProducer, sink: AIOKafkaConsumer, topic: str, count: int, rate: float | None
) -> list[float]:
    """Send `count` messages into `topic` while the sink reads them off the last topic; latency of each."""
    ids = [uuid.uuid4().hex for _ in range(count)]
    latencies: list[float] = []
    await asyncio.gather(_send(producer, topic, ids, rate), _sink_until(sink, set(ids), latencies))
    return latencies


def _start_relays(bootstrap: str, topics: list[str], *, group: str, log: IO[bytes]) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "bench.kafka_relay", bootstrap, source, target, f"{group}-{i}"],
            env=env,
            stdout=log,
            stderr=log,
        )
        for i, (source, target) in enumerate(itertools.pairwise(topics))
    ]


async def relay_ceiling(
    *, bootstrap: str, work_dir: Path, messages: int, rates: list[float | None], hops: int = 3
) -> list[Result]:
    """One run per rate (None: as fast as it goes) of `messages` through `hops` topics and `hops - 1` relays."""
    run = uuid.uuid4().hex[:8]
    topics = [f"bench.relay.{run}.{i}" for i in range(hops)]
    log = (work_dir / "relay.log").open("ab")
    relays = _start_relays(bootstrap, topics, group=f"relay-{run}", log=log)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    sink = AIOKafkaConsumer(
        topics[-1],
        bootstrap_servers=bootstrap,
        group_id=f"sink-{run}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await producer.start()
    await sink.start()
    results: list[Result] = []
    try:
        # Until every relay has joined its group nothing moves: warm up before timing.
        async with asyncio.timeout(120):
            await _through(producer, sink, topics[0], 20, None)
        for rate in rates:
            started = time.perf_counter()
            async with asyncio.timeout(600):
                latencies = await _through(producer, sink, topics[0], messages, rate)
            label = f"at {rate:g}/s" if rate else "as fast as it goes"
            name = f"ceiling: plain aiokafka, {hops} hops, {hops - 1} relay processes, {label}"
            results.append(Result(name, messages, time.perf_counter() - started, latencies, 0))
    finally:
        await sink.stop()
        await producer.stop()
        for process in relays:
            process.terminate()
        for process in relays:
            process.wait(timeout=20)
        log.close()
    return results


if __name__ == "__main__":
    asyncio.run(relay(*sys.argv[1:5]))
