"""Where a reply's time goes: records of the channel topics chained into the stages of each message."""

import json

from bench.stages import Stamped, percentile, stage_latencies, stamped, summary
from schemas.topics import CHANNEL_DELIVERY, CHANNEL_INBOUND, CHANNEL_OUTBOUND, CHANNEL_RAW


def chain(n: int, *, at: float, normalize: float, agent: float, send: float, state: str = "sent") -> list[Stamped]:
    """The four records of message `n`: made and sent a millisecond apart, the stages' gaps between them."""
    raw = Stamped(CHANNEL_RAW, at, at - 1, f"raw-{n}", f"raw-{n}", None, None)
    made = at + normalize
    inbound = Stamped(CHANNEL_INBOUND, made + 1, made, f"in-{n}", f"in-{n}", f"raw-{n}", None)
    replied = made + 1 + agent
    reply = Stamped(CHANNEL_OUTBOUND, replied + 1, replied, f"out-{n}", f"in-{n}", f"in-{n}", None)
    done = replied + 1 + send
    status = Stamped(CHANNEL_DELIVERY, done + 1, done, f"d-{n}", f"in-{n}", f"out-{n}", state)
    return [raw, inbound, reply, status]


def test_each_message_s_records_chain_into_its_three_stages() -> None:
    records = chain(1, at=1000, normalize=8, agent=25, send=17) + chain(2, at=2000, normalize=70, agent=30, send=5)
    assert stage_latencies(records) == {"normalize": [8, 70], "agent": [25, 30], "send": [17, 5]}


def test_the_first_reply_counts_and_a_later_one_of_the_same_message_does_not() -> None:
    records = chain(1, at=1000, normalize=8, agent=25, send=17)
    later = Stamped(CHANNEL_OUTBOUND, 1500, 1499, "out-1b", "in-1", "in-1", None)
    assert stage_latencies([*records, later])["agent"] == [25]


def test_a_chain_cut_by_the_window_or_never_sent_is_left_out() -> None:
    cut = chain(1, at=1000, normalize=8, agent=25, send=17)[1:]  # its webhook was before the window
    unsent = chain(2, at=2000, normalize=8, agent=25, send=17, state="failed")
    no_reply = chain(3, at=3000, normalize=8, agent=25, send=17)[:2]  # a person answered it
    whole = chain(4, at=4000, normalize=9, agent=26, send=18)
    assert stage_latencies([*cut, *unsent, *no_reply, *whole]) == {"normalize": [9], "agent": [26], "send": [18]}


def test_a_record_is_stamped_from_its_timestamp_and_envelope() -> None:
    value = json.dumps(
        {
            "event_id": "e",
            "correlation_id": "c",
            "causation_id": None,
            "occurred_at": "2026-01-01T00:00:00.250Z",
            "state": "sent",
        }
    ).encode()
    record = stamped(CHANNEL_DELIVERY, 1767225600300, value)
    assert record == Stamped(CHANNEL_DELIVERY, 1767225600300.0, 1767225600250.0, "e", "c", None, "sent")


def test_a_value_that_is_no_envelope_is_skipped_not_fatal() -> None:
    for value in (b"not json", b"[]", b"{}", None, json.dumps({"event_id": "e", "occurred_at": "yesterday"}).encode()):
        assert stamped(CHANNEL_RAW, 1, value) is None


def test_the_summary_gives_each_stage_s_p50_p95_p99() -> None:
    stages = {"normalize": [float(v) for v in range(1, 101)], "agent": [], "send": [5.0]}
    assert summary(stages) == "normalize 51/96/100 send 5/5/5"
    assert percentile([], 0.5) == 0.0
