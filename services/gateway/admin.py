"""Platform-admin operations, reached only through the CLI: create tenants, keys and channel accounts."""

import uuid

from sqlalchemy import Engine

from schemas.envelope import Channel
from sellmesh.db import session_scope
from services.gateway.keys import issue_key
from services.gateway.store import ApiKey, ChannelAccount, Tenant
from services.gateway.tables import TeamMember


def create_tenant(engine: Engine, *, name: str) -> tuple[uuid.UUID, str]:
    """Create a tenant and its first owner key; returns (tenant id, the key in plaintext, shown once)."""
    key = issue_key()
    with session_scope(engine) as session:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
        # The first key belongs to the owner as a team member, like every key made later through /v1/team.
        owner = TeamMember(tenant_id=tenant.id, name="Owner", role="owner")
        session.add(owner)
        session.flush()
        session.add(
            ApiKey(
                tenant_id=tenant.id,
                prefix=key.prefix,
                secret_hash=key.secret_hash,
                role="owner",
                person=owner.name,
                member_id=owner.id,
            )
        )
        return tenant.id, key.plaintext


def connect_channel_account(
    engine: Engine,
    *,
    tenant_id: uuid.UUID,
    channel: Channel,
    external_id: str,
    app_secret: str,
    verify_token: str,
    access_token: str,
    display_name: str = "",
) -> uuid.UUID:
    with session_scope(engine) as session:
        account = ChannelAccount(
            tenant_id=tenant_id,
            channel=channel.value,
            external_id=external_id,
            app_secret=app_secret,
            verify_token=verify_token,
            access_token=access_token,
            display_name=display_name,
        )
        session.add(account)
        session.flush()
        return account.id
