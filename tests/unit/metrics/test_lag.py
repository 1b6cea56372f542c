"""Lag per partition from committed, beginning and end offsets, and the topic layout from a metadata response."""

from aiokafka import TopicPartition

from sellmesh.lag import DLQ_PURGE_GROUP, LagCollector, partition_lags, topic_partitions
from sellmesh.ops.dlq import DLQ_GROUP

P0, P1, P2 = (TopicPartition("orders.commands.v1", p) for p in range(3))


def test_lag_is_the_distance_from_the_committed_offset_to_the_end() -> None:
    lags = partition_lags("orders", [P0, P1], committed={P0: 7, P1: 10}, beginning={P0: 0, P1: 0}, end={P0: 10, P1: 10})
    assert [(lag.partition, lag.lag) for lag in lags] == [(0, 3), (1, 0)]


def test_a_partition_never_committed_counts_from_its_beginning() -> None:
    # -1 is what the broker answers for a group with no offset on that partition.
    lags = partition_lags("orders", [P0, P1], committed={P0: -1}, beginning={P0: 4, P1: 2}, end={P0: 9, P1: 2})
    assert [(lag.partition, lag.lag) for lag in lags] == [(0, 5), (1, 0)]


def test_lag_is_never_negative_while_the_end_offset_is_behind_a_fresh_commit() -> None:
    [lag] = partition_lags("orders", [P2], committed={P2: 12}, beginning={P2: 0}, end={P2: 11})
    assert lag.lag == 0


def test_topic_layout_skips_topics_the_broker_reports_an_error_for() -> None:
    described = [
        {"error_code": 0, "topic": "orders.commands.v1", "partitions": [{"partition": 1}, {"partition": 0}]},
        {"error_code": 3, "topic": "gone.v1", "partitions": []},
    ]
    assert topic_partitions(described) == {"orders.commands.v1": [P0, P1]}


def test_each_subscribed_topic_has_its_dead_letter_topic_watched() -> None:
    collector = LagCollector(
        bootstrap_servers="127.0.0.1:9",
        groups={
            "orders": frozenset({"orders.commands.v1", "payments.events.v1"}),
            "payments": frozenset({"orders.events.v1"}),
        },
    )
    assert collector.dead_letter_topics == ["orders.commands.v1.dlq", "orders.events.v1.dlq", "payments.events.v1.dlq"]


def test_dead_letters_count_from_the_mark_the_purge_command_commits() -> None:
    assert DLQ_PURGE_GROUP == DLQ_GROUP
