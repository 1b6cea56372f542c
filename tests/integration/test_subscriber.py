"""The shared subscriber wrapper over the real broker and Redis: retry, dead-letter, dedup, keep consuming."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis

from schemas.handoff import ResolveHandoff
from schemas.topics import HANDOFF_COMMANDS, dlq_of
from sellmesh.broker import MeshBroker, make_broker, publish
from sellmesh.subscriber import PermanentError, RedisDedup, RetryPolicy, subscribe
from tests.builders import random_tenant_id, resolve_command, unique_label

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


class Recorder:
    """Behaves by conversation id: `bad-*` always fails, `flaky-*` fails twice, `gone-*` fails for good."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.done: list[str] = []

    async def __call__(self, command: ResolveHandoff) -> None:
        key = command.conversation_id
        self.calls[key] = self.calls.get(key, 0) + 1
        if key.startswith("gone-"):
            raise PermanentError("order will never exist")
        if key.startswith("bad-"):
            raise RuntimeError(f"boom for {key}")
        if key.startswith("flaky-") and self.calls[key] <= 2:
            raise ConnectionError("dependency down")
        self.done.append(key)


@dataclass
class Harness:
    broker: MeshBroker
    recorder: Recorder
    group: str
    letters: list[Any] = field(default_factory=list)

    def letters_for(self, key: bytes) -> list[Any]:
        return [
            r for r in self.letters if r.key == key and dict(r.headers).get("x-consumer-group") == self.group.encode()
        ]


async def eventually(check: Callable[[], bool], within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def harness(kafka_bootstrap: str, redis_url: str) -> AsyncIterator[Harness]:
    group = unique_label("test")
    redis: Redis = Redis.from_url(redis_url, decode_responses=True)
    broker = make_broker(bootstrap_servers=kafka_bootstrap, enable_idempotence=False, client_id=group)
    recorder = Recorder()
    subscribe(
        broker,
        HANDOFF_COMMANDS,
        group=group,
        name="recorder",
        handler=recorder,
        dedup=RedisDedup(redis, ttl_seconds=600),
        retry=RetryPolicy(attempts=3, base_seconds=0.01),
    )
    dlq = AIOKafkaConsumer(dlq_of(HANDOFF_COMMANDS), bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await asyncio.gather(broker.start(), dlq.start())
    h = Harness(broker, recorder, group)

    async def collect() -> None:
        async for record in dlq:
            h.letters.append(record)

    task = asyncio.create_task(collect())
    yield h
    task.cancel()
    await asyncio.gather(broker.stop(), dlq.stop(), redis.aclose(), return_exceptions=True)


def key_of(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_failing_message_goes_to_dlq_after_retries_and_the_rest_is_consumed(harness: Harness) -> None:
    tenant = random_tenant_id()
    bad, good = key_of("bad"), key_of("good")
    command = resolve_command(tenant, bad)
    await publish(harness.broker, HANDOFF_COMMANDS, command, key=bad)
    await publish(harness.broker, HANDOFF_COMMANDS, resolve_command(tenant, good), key=good)
    await eventually(lambda: good in harness.recorder.done and bool(harness.letters_for(bad.encode())))
    assert harness.recorder.calls[bad] == 3
    [letter] = harness.letters_for(bad.encode())
    headers = {k: v.decode() for k, v in letter.headers}
    assert letter.value == command.model_dump_json().encode()
    assert headers["x-error-kind"] == "exhausted"
    assert headers["x-error-type"] == "RuntimeError"
    assert f"boom for {bad}" in headers["x-error-message"]
    assert headers["x-original-topic"] == HANDOFF_COMMANDS
    assert headers["x-attempts"] == "3"
    assert headers["tenant_id"] == str(tenant)


async def test_transient_failure_is_retried_and_not_dead_lettered(harness: Harness) -> None:
    flaky = key_of("flaky")
    await publish(harness.broker, HANDOFF_COMMANDS, resolve_command(random_tenant_id(), flaky), key=flaky)
    await eventually(lambda: flaky in harness.recorder.done)
    assert harness.recorder.calls[flaky] == 3
    assert harness.letters_for(flaky.encode()) == []


async def test_permanent_error_is_dead_lettered_without_retries(harness: Harness) -> None:
    gone = key_of("gone")
    await publish(harness.broker, HANDOFF_COMMANDS, resolve_command(random_tenant_id(), gone), key=gone)
    await eventually(lambda: bool(harness.letters_for(gone.encode())))
    assert harness.recorder.calls[gone] == 1
    assert dict(harness.letters_for(gone.encode())[0].headers)["x-error-kind"] == b"permanent"


async def test_duplicate_event_id_is_handled_once(harness: Harness) -> None:
    dup, after = key_of("dup"), key_of("after")
    command = resolve_command(random_tenant_id(), dup)
    for _ in range(3):
        await publish(harness.broker, HANDOFF_COMMANDS, command, key=dup)
    await publish(harness.broker, HANDOFF_COMMANDS, resolve_command(command.tenant_id, after), key=after)
    await eventually(lambda: after in harness.recorder.done)
    assert harness.recorder.done.count(dup) == 1


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"", json.dumps({"type": "resolve"}).encode(), json.dumps([1, 2]).encode(), b"\xff\xfe\x00"],
    ids=["malformed", "empty", "missing-fields", "wrong-shape", "not-utf8"],
)
async def test_invalid_bytes_are_dead_lettered_untouched_without_retries(harness: Harness, payload: bytes) -> None:
    junk, after = key_of("junk"), key_of("after")
    await harness.broker.publish(payload, topic=HANDOFF_COMMANDS, key=junk.encode())
    await publish(harness.broker, HANDOFF_COMMANDS, resolve_command(random_tenant_id(), after), key=after)
    await eventually(lambda: after in harness.recorder.done and bool(harness.letters_for(junk.encode())))
    [letter] = harness.letters_for(junk.encode())
    assert letter.value == payload
    assert dict(letter.headers)["x-error-kind"] == b"invalid"
    assert dict(letter.headers)["x-attempts"] == b"0"
