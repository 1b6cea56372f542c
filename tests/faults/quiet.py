"""Waits until the mesh has nothing in flight, so invariants are checked on a finished story, not a moving one."""

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis
from sqlalchemy import Engine, text

from schemas.topics import ALL_TOPICS
from services.agent.burst import DUE_KEY


async def consumer_lag(bootstrap: str) -> dict[str, int]:
    """Per consumer group: messages on its topics it has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        lag: dict[str, int] = {}
        await consumer.topics()
        partitions = [
            TopicPartition(topic, p) for topic in ALL_TOPICS for p in consumer.partitions_for_topic(topic) or ()
        ]
        groups = [group for group, *_ in await admin.list_consumer_groups()]
        # Asked partition by partition: the local broker cannot answer "every offset of this group".
        committed_by_group = [await admin.list_consumer_group_offsets(group, partitions=partitions) for group in groups]
        # End offsets are read after the commits: read before, a record produced and committed in between
        # would count as a negative lag that is only the probe's own race.
        ends = await consumer.end_offsets(partitions)
        for group, offsets in zip(groups, committed_by_group, strict=True):
            committed = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
            # A topic the group committed on is one it reads; its uncommitted partitions count from the start.
            topics = {tp.topic for tp in committed}
            # A commit past the end offset leaves nothing for the group to read, so it is nothing in flight.
            # The embedded broker has shown one after a producer died mid-request; the invariants check the
            # data itself, this only asks whether the mesh still has work.
            lag[group] = sum(max(0, ends[tp] - committed.get(tp, 0)) for tp in partitions if tp.topic in topics)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


def unpublished_outbox_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NULL")).scalar_one())


async def in_flight(*, bootstrap: str, engine: Engine, redis_url: str) -> list[str]:
    """What is still moving: lagging groups, unpublished outbox rows, conversations the agent has yet to answer."""
    busy = [f"group {g} lags {n}" for g, n in (await consumer_lag(bootstrap)).items() if n]
    if rows := await asyncio.to_thread(unpublished_outbox_rows, engine):
        busy.append(f"{rows} outbox rows unpublished")
    redis: Redis = Redis.from_url(redis_url)
    try:
        if due := await redis.zcard(DUE_KEY):
            busy.append(f"{due} conversations due at the agent")
    finally:
        await redis.aclose()
    return busy


async def wait_until_quiet(*, bootstrap: str, engine: Engine, redis_url: str, within: float) -> list[str]:
    """Poll until nothing is in flight twice in a row; returns what was still moving if `within` ran out."""
    deadline = asyncio.get_running_loop().time() + within
    calm = 0
    busy: list[str] = []
    while asyncio.get_running_loop().time() < deadline:
        busy = await in_flight(bootstrap=bootstrap, engine=engine, redis_url=redis_url)
        calm = 0 if busy else calm + 1
        if calm == 2:
            return []
        await asyncio.sleep(0.5)
    return busy
