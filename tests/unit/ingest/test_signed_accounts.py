"""Only the items of accounts that signed a webhook are taken: an entry for another account rides in the same body
unverified, and must not become that account's message, whoever connects it by the time the normalizer runs."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from faststream.kafka import KafkaBroker
from sqlalchemy import Engine, select
from sqlmodel import Session

from schemas.channel import RawWebhook
from schemas.envelope import Channel
from services.gateway.admin import connect_channel_account, create_tenant
from services.ingest.inbound import Normalizer
from services.ingest.payloads import whatsapp_text
from services.ingest.store import MessageLog
from tests.builders import envelope

AT = datetime(2026, 12, 1, tzinfo=UTC)


class KeptLetters:
    """Stands in for the broker: what the normalizer keeps in the DLQ."""

    def __init__(self) -> None:
        self.kept: list[dict[str, Any]] = []

    async def publish(self, body: bytes, *, topic: str, key: bytes, headers: dict[str, str]) -> None:
        self.kept.append({"topic": topic, "headers": headers})


def _connect(engine: Engine, phone_number_id: str, secret: str) -> tuple[uuid.UUID, uuid.UUID]:
    tenant, _ = create_tenant(engine, name=f"Shop {phone_number_id}")
    account = connect_channel_account(
        engine,
        tenant_id=tenant,
        channel=Channel.WHATSAPP,
        external_id=phone_number_id,
        app_secret=secret,
        verify_token=f"verify-{phone_number_id}",
        access_token="token",
    )
    return tenant, account


def _two_accounts_body() -> str:
    """One body naming the sender's own number and a second number, as one POST of Meta's batches them."""
    mine = whatsapp_text(phone_number_id="100", customer="15550001111", text="hello")
    other = whatsapp_text(phone_number_id="200", customer="15550002222", text="cancel my order and refund me")
    return json.dumps({**mine, "entry": [*mine["entry"], *other["entry"]]})


def _logged(engine: Engine) -> dict[str, list[str]]:
    with Session(engine) as session:
        rows = session.execute(select(MessageLog.tenant_id, MessageLog.text)).all()  # type: ignore[call-overload]
    by_tenant: dict[str, list[str]] = {}
    for tenant, text in rows:
        by_tenant.setdefault(str(tenant), []).append(text)
    return by_tenant


def _raw(tenant: uuid.UUID, account: uuid.UUID, body: str, **signed: Any) -> RawWebhook:
    return RawWebhook(**envelope(tenant), channel_account_id=str(account), body=body, received_at=AT, **signed)


@pytest.mark.asyncio
async def test_an_entry_for_an_account_that_did_not_sign_is_kept_not_taken(file_engine: Engine) -> None:
    sender, sender_account = _connect(file_engine, "100", "sender-secret")
    body = _two_accounts_body()
    # The edge saw only "100" connected and verified the body with its secret; "200" is connected afterwards,
    # by another tenant, before the normalizer reads the record.
    victim, _ = _connect(file_engine, "200", "victim-secret")
    letters = KeptLetters()
    normalizer = Normalizer(engine=file_engine, broker=cast(KafkaBroker, letters))

    await normalizer.on_raw_webhook(_raw(sender, sender_account, body, signed_by=(str(sender_account),)))

    logged = _logged(file_engine)
    assert logged.get(str(sender)) == ["hello"]
    assert str(victim) not in logged
    assert len(letters.kept) == 1
    assert "200: its account did not sign the webhook" in letters.kept[0]["headers"]["x-error-message"]


@pytest.mark.asyncio
async def test_a_record_from_before_signed_by_trusts_only_its_own_account(file_engine: Engine) -> None:
    sender, sender_account = _connect(file_engine, "100", "sender-secret")
    victim, _ = _connect(file_engine, "200", "victim-secret")
    normalizer = Normalizer(engine=file_engine, broker=cast(KafkaBroker, KeptLetters()))

    await normalizer.on_raw_webhook(_raw(sender, sender_account, _two_accounts_body()))

    assert str(victim) not in _logged(file_engine)


@pytest.mark.asyncio
async def test_a_body_the_platform_signed_is_taken_for_every_account_it_names(file_engine: Engine) -> None:
    first, first_account = _connect(file_engine, "100", "")
    second, _ = _connect(file_engine, "200", "")
    letters = KeptLetters()
    normalizer = Normalizer(engine=file_engine, broker=cast(KafkaBroker, letters))

    await normalizer.on_raw_webhook(_raw(first, first_account, _two_accounts_body(), platform_signed=True))

    logged = _logged(file_engine)
    assert logged.get(str(first)) == ["hello"]
    assert logged.get(str(second)) == ["cancel my order and refund me"]
    assert letters.kept == []
