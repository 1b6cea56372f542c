"""`sellmesh groups lag|reset` against the real local broker: dry run, commit, and refusal while members live."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from typer.testing import CliRunner, Result

from sellmesh.cli import app
from sellmesh.ops.address import BrokerAddress
from sellmesh.ops.connection import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

runner = CliRunner()


@dataclass
class Groups:
    bootstrap: str
    topic: str
    stopped: str
    before: datetime

    async def cli(self, *args: str, input: str | None = None) -> Result:
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "SELLMESH_LOG_LEVEL": "WARNING"}
        # In a thread: the command runs its own event loop, and a live member may be heartbeating on this one.
        return await asyncio.to_thread(runner.invoke, app, list(args), env=env, input=input)

    async def committed(self, group: str) -> dict[tuple[str, int], int]:
        async with Cluster(BrokerAddress(self.bootstrap, False, "test")) as cluster:
            return await cluster.committed(group, [(self.topic, 0)])


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def groups(kafka_bootstrap: str) -> AsyncIterator[Groups]:
    """Six messages on partition 0 of a topic of this module's own; a stopped group committed at offset 2."""
    topic, stopped = f"ops-test-groups-{uuid.uuid4().hex[:8]}", f"ops-test-stopped-{uuid.uuid4().hex[:8]}"
    before = datetime.now(UTC)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    for i in range(6):
        await producer.send_and_wait(topic, f"m{i}".encode(), partition=0)
    await producer.stop()
    async with Cluster(BrokerAddress(kafka_bootstrap, False, "test")) as cluster:
        await cluster.commit(stopped, topic, {0: 2})
    yield Groups(kafka_bootstrap, topic, stopped, before)


@asynccontextmanager
async def live_member(groups: Groups, group: str, *, committed: int) -> AsyncIterator[None]:
    """A member of `group` that has joined and committed `committed` on partition 0, live while in the block."""
    # A short session makes the broker's join wait short (about half the session), and heartbeats keep it live.
    member = AIOKafkaConsumer(
        groups.topic,
        bootstrap_servers=groups.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    await member.start()
    try:
        await member.getmany(timeout_ms=500)
        await member.commit({TopicPartition(groups.topic, 0): committed})
        yield
    finally:
        await member.stop()


async def test_lag_shows_committed_end_and_lag_per_partition(groups: Groups) -> None:
    result = await groups.cli("groups", "lag", groups.stopped)
    assert result.exit_code == 0, result.output
    heading, row = result.stdout.splitlines()
    assert heading.split() == ["group", "state/members", "topic", "partition", "committed", "end", "lag"]
    assert row.split() == [groups.stopped, "Empty/0", groups.topic, "0", "2", "6", "4"]


async def test_reset_dry_run_prints_current_to_new_and_changes_nothing(groups: Groups) -> None:
    result = await groups.cli(
        "groups", "reset", groups.stopped, "--topic", groups.topic, "--partition", "0", "--to-offset", "5", "--dry-run"
    )
    assert result.exit_code == 0, result.output
    assert "partition 0: 2 -> 5" in result.stdout
    assert await groups.committed(groups.stopped) == {(groups.topic, 0): 2}


async def test_reset_commits_the_new_offsets_by_offset_and_by_time(groups: Groups) -> None:
    declined = await groups.cli(
        "groups", "reset", groups.stopped, "--topic", groups.topic, "--partition", "0", "--to-offset", "5", input="n\n"
    )
    assert declined.exit_code == 1 and await groups.committed(groups.stopped) == {(groups.topic, 0): 2}
    moved = await groups.cli(
        "groups", "reset", groups.stopped, "--topic", groups.topic, "--partition", "0", "--to-offset", "5", "--yes"
    )
    assert moved.exit_code == 0, moved.output
    assert await groups.committed(groups.stopped) == {(groups.topic, 0): 5}
    by_time = await groups.cli(
        "groups", "reset", groups.stopped, "--topic", groups.topic, "--to-time", groups.before.isoformat(), "--yes"
    )
    assert by_time.exit_code == 0, by_time.output
    assert "partition 0: 5 -> 0" in by_time.stdout
    assert await groups.committed(groups.stopped) == {(groups.topic, 0): 0}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to-offset", "99", "--partition", "0"], "--to-offset 99 is outside partition 0, which holds 0 to 6"),
        ([], "give exactly one of --to-offset and --to-time"),
        (["--to-offset", "1", "--to-time", "1h"], "give exactly one"),
        (["--to-time", "soon"], "cannot read 'soon' as a time"),
    ],
    ids=["outside", "neither", "both", "bad-time"],
)
async def test_reset_refuses_bad_input(groups: Groups, args: list[str], message: str) -> None:
    result = await groups.cli("groups", "reset", groups.stopped, "--topic", groups.topic, *args, "--yes")
    assert result.exit_code == 2, result.output
    assert message in result.stderr


async def test_unknown_groups_and_topics_are_errors(groups: Groups) -> None:
    lag = await groups.cli("groups", "lag", "ordres")
    assert lag.exit_code == 2 and "consumer group 'ordres' is not known" in lag.stderr
    reset = await groups.cli("groups", "reset", groups.stopped, "--topic", "nope.v1", "--to-offset", "0", "--yes")
    assert reset.exit_code == 2 and "topic 'nope.v1' does not exist" in reset.stderr


async def test_reset_is_refused_while_the_group_has_a_live_member(groups: Groups) -> None:
    live = f"ops-test-live-{uuid.uuid4().hex[:8]}"
    async with live_member(groups, live, committed=3):
        result = await groups.cli("groups", "reset", live, "--topic", groups.topic, "--to-offset", "0", "--yes")
        assert result.exit_code == 1, result.output
        assert "partition 0: 3 -> 0" in result.stdout
        assert f"group '{live}' has 1 live member(s)" in result.stderr
        assert await groups.committed(live) == {(groups.topic, 0): 3}


async def test_merge_gives_a_group_the_lowest_offset_of_the_old_groups_and_refuses_live_ones(groups: Groups) -> None:
    ahead, behind = (f"ops-test-old-{name}-{uuid.uuid4().hex[:8]}" for name in ("ahead", "behind"))
    into = f"ops-test-into-{uuid.uuid4().hex[:8]}"
    async with Cluster(BrokerAddress(groups.bootstrap, False, "test")) as cluster:
        await cluster.commit(ahead, groups.topic, {0: 5})
        await cluster.commit(behind, groups.topic, {0: 3})

    dry = await groups.cli("groups", "merge", ahead, behind, "--into", into, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"{groups.topic} partition 0: none -> 3 (from {behind})" in dry.stdout
    assert await groups.committed(into) == {}

    declined = await groups.cli("groups", "merge", ahead, behind, "--into", into, input="n\n")
    assert declined.exit_code == 1 and await groups.committed(into) == {}

    merged = await groups.cli("groups", "merge", ahead, behind, "--into", into, "--yes")
    assert merged.exit_code == 0, merged.output
    assert await groups.committed(into) == {(groups.topic, 0): 3}
    again = await groups.cli("groups", "merge", ahead, behind, "--into", into, "--yes")
    assert again.exit_code == 0 and "nothing to do" in again.stdout

    unknown = await groups.cli("groups", "merge", "ops-test-no-such-group", "--into", into, "--yes")
    assert unknown.exit_code == 2 and "is not known" in unknown.stderr

    async with live_member(groups, ahead, committed=1):
        live = await groups.cli("groups", "merge", ahead, "--into", into, "--yes")
        assert live.exit_code == 1, live.output
        assert f"group '{ahead}' has 1 live member(s)" in live.stderr
        assert await groups.committed(into) == {(groups.topic, 0): 3}
