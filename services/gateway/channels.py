"""A tenant's channel accounts through the API: connect with secrets, list without them."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from schemas.envelope import Channel
from services.gateway.admin import connect_channel_account
from services.gateway.store import ChannelAccount


@dataclass(frozen=True)
class AccountSummary:
    """The non-secret facts of a connected account."""

    id: uuid.UUID
    channel: str
    external_id: str
    display_name: str
    created_at: datetime


class AlreadyConnected(Exception):
    """The channel's account id is connected already (to this tenant or another)."""


def _summary(row: ChannelAccount) -> AccountSummary:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return AccountSummary(
        id=row.id, channel=row.channel, external_id=row.external_id, display_name=row.display_name, created_at=created
    )


def accounts(engine: Engine, tenant_id: uuid.UUID) -> list[AccountSummary]:
    query = (
        select(ChannelAccount)
        .where(ChannelAccount.tenant_id == tenant_id)
        .order_by(col(ChannelAccount.created_at), col(ChannelAccount.id))
    )
    with Session(engine) as session:
        return [_summary(row) for row in session.exec(query)]


def connect(
    engine: Engine,
    tenant_id: uuid.UUID,
    *,
    channel: Channel,
    external_id: str,
    display_name: str,
    app_secret: str,
    verify_token: str,
    access_token: str,
) -> AccountSummary:
    try:
        account_id = connect_channel_account(
            engine,
            tenant_id=tenant_id,
            channel=channel,
            external_id=external_id,
            app_secret=app_secret,
            verify_token=verify_token,
            access_token=access_token,
            display_name=display_name,
        )
    except IntegrityError:
        # The unique (channel, external_id) key: one account routes to one tenant only. `from None`: the
        # database error carries the statement's parameters, secrets included, and must not be logged.
        raise AlreadyConnected(f"{channel.value} account {external_id} is already connected") from None
    with Session(engine) as session:
        row = session.get(ChannelAccount, account_id)
        assert row is not None
        return _summary(row)
