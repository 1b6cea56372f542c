"""Every branch of the customer-service window decision."""

from datetime import UTC, datetime, timedelta

import pytest

from schemas.channel import Author
from schemas.envelope import Channel
from services.ingest.window import Refuse, RefuseReason, Send, SendWithTag, decide_send

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
MESSAGING = [Channel.MESSENGER, Channel.INSTAGRAM]


def decide(
    channel: Channel, author: Author, hours_ago: float | None, *, has_template: bool = False
) -> Send | SendWithTag | Refuse:
    last = None if hours_ago is None else NOW - timedelta(hours=hours_ago)
    return decide_send(channel=channel, author=author, last_inbound_at=last, now=NOW, has_template=has_template)


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("author", list(Author))
def test_inside_the_window_anyone_may_send_on_any_channel(channel: Channel, author: Author) -> None:
    assert decide(channel, author, 23.99) == Send()
    assert decide(channel, author, 0) == Send()


def test_a_customer_clock_slightly_ahead_of_ours_still_counts_as_inside_the_window() -> None:
    assert decide(Channel.WHATSAPP, Author.AI, -0.01) == Send()


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("hours_ago", [24, 30, 24 * 30, None])
def test_the_ai_is_refused_outside_the_window_and_a_person_is_asked_for(
    channel: Channel, hours_ago: float | None
) -> None:
    decision = decide(channel, Author.AI, hours_ago, has_template=True)
    assert decision == Refuse(RefuseReason.WINDOW_CLOSED)
    assert isinstance(decision, Refuse)
    assert decision.status == "refused"
    assert decision.handoff_note(Author.AI) == "customer-service window closed: the AI may not write"


@pytest.mark.parametrize("channel", MESSAGING)
def test_a_person_on_messenger_or_instagram_gets_the_human_agent_tag_up_to_seven_days(channel: Channel) -> None:
    assert decide(channel, Author.HUMAN, 24) == SendWithTag("HUMAN_AGENT")
    assert decide(channel, Author.HUMAN, 7 * 24 - 0.01) == SendWithTag("HUMAN_AGENT")


@pytest.mark.parametrize("channel", MESSAGING)
@pytest.mark.parametrize("hours_ago", [7 * 24, 8 * 24, None])
def test_a_person_on_messenger_or_instagram_fails_after_seven_days_or_without_any_inbound(
    channel: Channel, hours_ago: float | None
) -> None:
    decision = decide(channel, Author.HUMAN, hours_ago)
    assert decision == Refuse(RefuseReason.HUMAN_AGENT_EXPIRED)
    assert isinstance(decision, Refuse)
    assert decision.status == "failed"
    # The person at work is told their reply did not go, and why: the delivery status alone reaches nobody.
    assert decision.handoff_note(Author.HUMAN) == (
        "a reply from the team did not reach the customer: "
        "more than 7 days since the customer's last message: no tag allows a reply"
    )


@pytest.mark.parametrize("channel", MESSAGING)
@pytest.mark.parametrize("hours_ago", [25, None])
def test_a_system_message_on_messenger_or_instagram_fails_outside_the_window(
    channel: Channel, hours_ago: float | None
) -> None:
    decision = decide(channel, Author.SYSTEM, hours_ago)
    assert decision == Refuse(RefuseReason.NO_TAG_FOR_SYSTEM)
    assert isinstance(decision, Refuse)
    assert decision.status == "failed"


@pytest.mark.parametrize("author", [Author.HUMAN, Author.SYSTEM])
@pytest.mark.parametrize("hours_ago", [24, 24 * 10, None])
def test_whatsapp_outside_the_window_needs_a_template(author: Author, hours_ago: float | None) -> None:
    decision = decide(Channel.WHATSAPP, author, hours_ago)
    assert isinstance(decision, Refuse)
    assert (decision.status, decision.detail) == ("failed", "whatsapp window closed: a template is required")
    assert decision.handoff_note(author).endswith("did not reach the customer: " + decision.detail)
    assert decide(Channel.WHATSAPP, author, hours_ago, has_template=True) == Send()
