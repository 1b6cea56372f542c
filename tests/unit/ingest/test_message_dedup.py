"""A channel message is a duplicate only when the message log's unique key already holds it: any other failed
insert is raised (retried, then kept in the DLQ), never dropped as a redelivery."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from faststream.kafka import KafkaBroker
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from schemas.channel import RawWebhook, TextContent
from schemas.envelope import Channel
from services.gateway.query import ChannelAccountView
from services.ingest import inbound, store
from services.ingest.inbound import Normalizer
from services.ingest.normalize import ParsedMessage
from services.ingest.store import MessageLog
from tests.builders import envelope

TENANT = uuid.uuid4()
ACCOUNT = ChannelAccountView(
    id=uuid.uuid4(), tenant_id=TENANT, channel="whatsapp", external_id="100", app_secret="s", access_token="t"
)
AT = datetime(2026, 12, 1, tzinfo=UTC)


def _item() -> ParsedMessage:
    return ParsedMessage(
        channel=Channel.WHATSAPP,
        account_external_id="100",
        customer_id="15550001111",
        message_id=f"wamid.{uuid.uuid4().hex}",
        sent_at=AT,
        content=TextContent(text="hi"),
    )


def _raw() -> RawWebhook:
    return RawWebhook(**envelope(TENANT), channel_account_id="100", body="{}", received_at=AT)


def _logged(engine: Engine, item: ParsedMessage) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(MessageLog).where(MessageLog.channel_message_id == item.message_id)  # type: ignore[arg-type]
        return session.execute(query).scalar_one()


def test_a_message_logged_before_is_a_duplicate(file_engine: Engine) -> None:
    normalizer = Normalizer(engine=file_engine, broker=cast(KafkaBroker, None))
    item = _item()
    assert normalizer._record_message(_raw(), ACCOUNT, item) is True
    assert normalizer._record_message(_raw(), ACCOUNT, item) is False
    assert _logged(file_engine, item) == 1


def test_another_failed_insert_is_raised_not_taken_for_a_duplicate(
    file_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any constraint but the unique key (here the outbox's insert, in the same transaction as the log's row).
    def refused(*_: object, **__: object) -> None:
        raise IntegrityError("INSERT INTO outbox", {}, Exception("CHECK constraint failed"))

    monkeypatch.setattr(inbound, "add_to_outbox", refused)
    normalizer = Normalizer(engine=file_engine, broker=cast(KafkaBroker, None))
    item = _item()
    with pytest.raises(IntegrityError):
        normalizer._record_message(_raw(), ACCOUNT, item)
    assert _logged(file_engine, item) == 0  # rolled back with it: the retry logs it


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (AT - timedelta(hours=25), AT - timedelta(hours=25)),  # a backlog: the window counts from the customer
        (AT + timedelta(hours=3), AT),  # a channel clock ahead of ours stretches nothing
        (datetime.fromtimestamp(0, UTC), AT),  # no timestamp in the webhook: the log time is all there is
    ],
    ids=["late", "ahead", "missing"],
)
def test_the_window_opens_from_the_customers_send_time_never_later_than_logged(
    file_engine: Engine, monkeypatch: pytest.MonkeyPatch, sent: datetime, expected: datetime
) -> None:
    monkeypatch.setattr(store, "_now", lambda: AT)
    normalizer = Normalizer(engine=file_engine, broker=cast(KafkaBroker, None))
    item = replace(_item(), sent_at=sent)
    assert normalizer._record_message(_raw(), ACCOUNT, item) is True
    with file_engine.connect() as connection:
        conversation = inbound.conversation_id(ACCOUNT, item.customer_id)
        assert store.last_inbound_at(connection, tenant_id=TENANT, conversation_id=conversation) == expected


def test_an_echo_never_opens_the_window(file_engine: Engine) -> None:
    normalizer = Normalizer(engine=file_engine, broker=cast(KafkaBroker, None))
    echo = replace(_item(), is_echo=True, send_id=None)
    normalizer._record_message(_raw(), ACCOUNT, echo)
    with file_engine.connect() as connection:
        conversation = inbound.conversation_id(ACCOUNT, echo.customer_id)
        assert store.last_inbound_at(connection, tenant_id=TENANT, conversation_id=conversation) is None
