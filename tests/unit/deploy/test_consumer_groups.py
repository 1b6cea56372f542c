"""Each service's consumer groups, from its real wiring: one consumer per group over all its topics, or with
several consumers per group (FastStream runs those for one topic only) one subscriber per topic."""

import pytest

from sellmesh.mesh import SERVICE_NAMES
from sellmesh.settings import MeshSettings
from tests.unit.deploy.conftest import consumers_of, subscribers_of

GROUPS = {
    "ingest": {"ingest", "ingest-sender"},
    "agent": {"agent"},
    "orders": {"orders"},
    "payments": {"payments", "payments-reconciler"},
    "handoff": {"handoff"},
    "gateway": {"gateway"},
}


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_one_consumer_per_group_reads_every_topic_of_the_group(service: str) -> None:
    subscribers = subscribers_of(service)
    assert {group for group, _, _ in subscribers} == GROUPS[service]
    # One subscriber, hence one aiokafka consumer, per group.
    assert len(subscribers) == len(GROUPS[service])
    assert all(workers == 1 for _, _, workers in subscribers)


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_several_consumers_per_group_give_each_topic_a_subscriber_of_its_own(service: str) -> None:
    settings = MeshSettings(kafka_consumers_per_subscription=3)
    subscribers = subscribers_of(service, settings)
    assert all(len(topics) == 1 and workers == 3 for _, topics, workers in subscribers), subscribers
    # The same groups read the same topics either way.
    assert consumers_of(service, settings) == consumers_of(service)
