"""Partitions and retention are defined once (sellmesh/topology.py) and documented as defined."""

import re

from schemas.topics import ALL_TOPICS, dlq_of
from sellmesh.topic_admin import new_topic
from sellmesh.topology import DLQ_LAYOUT, TOPIC_LAYOUT, every_topic, layout_of
from tests.unit.deploy.conftest import DEPLOY

RAW_TOPICS = ("channel.raw.v1", "payments.stripe.v1")


def documented_layout() -> dict[str, tuple[int, int]]:
    """Rows of deploy/README.md's topic table: | `topic` | partitions | N days | ..."""
    found: dict[str, tuple[int, int]] = {}
    for line in (DEPLOY / "README.md").read_text().splitlines():
        match = re.match(r"\|\s*`([a-z.0-9<>]+)`\s*\|\s*(\d+)\s*\|\s*(\d+) days\s*\|", line)
        if match:
            found[match[1]] = (int(match[2]), int(match[3]))
    return found


def test_every_topic_has_a_layout_and_every_dead_letter_topic_is_created() -> None:
    assert set(TOPIC_LAYOUT) == set(ALL_TOPICS)
    assert set(every_topic()) == set(ALL_TOPICS) | {dlq_of(t) for t in ALL_TOPICS}
    assert layout_of(dlq_of("orders.commands.v1")) == DLQ_LAYOUT


def test_raw_input_is_kept_long_enough_to_replay_and_dead_letters_longest() -> None:
    for topic in RAW_TOPICS:
        assert 7 <= layout_of(topic).retention_days <= 14
    assert DLQ_LAYOUT.retention_days > max(layout.retention_days for layout in TOPIC_LAYOUT.values())


def test_topic_creation_uses_the_layout() -> None:
    created = new_topic("channel.inbound.v1", replication_factor=3)
    assert created.num_partitions == TOPIC_LAYOUT["channel.inbound.v1"].partitions
    assert created.topic_configs["retention.ms"] == str(7 * 24 * 3600 * 1000)


def test_the_deploy_readme_states_the_same_partitions_and_retention() -> None:
    documented = documented_layout()
    expected = {t: (layout.partitions, layout.retention_days) for t, layout in TOPIC_LAYOUT.items()}
    expected["<topic>.dlq"] = (DLQ_LAYOUT.partitions, DLQ_LAYOUT.retention_days)
    assert documented == expected
