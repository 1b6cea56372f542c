"""Cached tenant and channel-account reads see a change committed in this process at once."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, update
from sqlmodel import Session

import sellmesh.tables  # noqa: F401  (registers every table on the metadata)
from sellmesh import readcache
from sellmesh.db import session_scope
from sellmesh.outbox import OutboxRow
from services.gateway.query import (
    SETTINGS_TTL_SECONDS,
    ChannelAccountView,
    HandoffSettings,
    TenantView,
    account_by_id,
    find_channel_account,
    handoff_settings,
    payment_settings,
    tenant_name,
    tenant_training,
)
from services.gateway.store import ChannelAccount, Tenant

TRAINING = {"tone": "warm", "faq": [{"q": "open?", "a": "yes"}], "handoff": {"timezone": "Europe/Madrid"}}
APP_SECRET = "app-secret-do-not-log-7f3a"
ACCESS_TOKEN = "access-token-do-not-log-91c2"
NOTIFY_SECRET = "whsec_do-not-log-44d1"


@pytest.fixture
def engine(file_engine: Engine) -> Engine:
    return file_engine


class StatementCounter:
    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, *_: Any) -> None:
        self.count += 1


def add_tenant(engine: Engine) -> uuid.UUID:
    with session_scope(engine) as session:
        tenant = Tenant(name="Shop", training=json.dumps(TRAINING), notify_secret=NOTIFY_SECRET)
        session.add(tenant)
    return tenant.id


def add_account(engine: Engine, tenant_id: uuid.UUID, *, external_id: str = "15550001") -> uuid.UUID:
    with session_scope(engine) as session:
        account = ChannelAccount(
            tenant_id=tenant_id,
            channel="whatsapp",
            external_id=external_id,
            app_secret=APP_SECRET,
            verify_token=f"verify-{uuid.uuid4()}",
            access_token=ACCESS_TOKEN,
        )
        session.add(account)
    return account.id


def found(engine: Engine, external_id: str = "15550001") -> ChannelAccountView | None:
    return find_channel_account(engine, channel="whatsapp", external_id=external_id)


def test_a_committed_access_token_is_seen_at_once_by_both_account_lookups(engine: Engine) -> None:
    account_id = add_account(engine, add_tenant(engine))
    assert (found(engine) or pytest.fail("not found")).access_token == ACCESS_TOKEN
    assert (account_by_id(engine, account_id) or pytest.fail("not found")).access_token == ACCESS_TOKEN

    with session_scope(engine) as session:
        row = session.get(ChannelAccount, account_id)
        assert row is not None
        row.access_token = "rotated-token"
        session.add(row)

    assert (found(engine) or pytest.fail("not found")).access_token == "rotated-token"
    assert (account_by_id(engine, account_id) or pytest.fail("not found")).access_token == "rotated-token"


def test_a_committed_external_id_change_moves_the_account_to_its_new_key(engine: Engine) -> None:
    account_id = add_account(engine, add_tenant(engine))
    assert found(engine) is not None

    with session_scope(engine) as session:
        row = session.get(ChannelAccount, account_id)
        assert row is not None
        row.external_id = "15559999"
        session.add(row)

    assert found(engine) is None
    assert (found(engine, "15559999") or pytest.fail("not found")).id == account_id


def test_a_deleted_account_is_gone_at_once_for_both_lookups(engine: Engine) -> None:
    account_id = add_account(engine, add_tenant(engine))
    assert found(engine) is not None
    assert account_by_id(engine, account_id) is not None

    with session_scope(engine) as session:
        session.delete(session.get(ChannelAccount, account_id))

    assert found(engine) is None
    assert account_by_id(engine, account_id) is None


def test_an_account_connected_by_another_process_after_a_miss_is_found_at_once(engine: Engine) -> None:
    tenant_id = add_tenant(engine)
    assert found(engine) is None
    account_id = uuid.uuid4()
    # Inserted outside this process's ORM, so no mapper event clears anything: only not caching the miss helps.
    with engine.begin() as connection:
        connection.execute(
            insert(ChannelAccount).values(
                id=account_id,
                tenant_id=tenant_id,
                channel="whatsapp",
                external_id="15550001",
                display_name="",
                app_secret=APP_SECRET,
                verify_token="verify-other-process",
                access_token=ACCESS_TOKEN,
                created_at=datetime.now(UTC),
            )
        )
    assert (found(engine) or pytest.fail("not found")).id == account_id
    assert account_by_id(engine, account_id) is not None


def test_committed_training_is_seen_at_once_by_every_tenant_reader(engine: Engine) -> None:
    tenant_id = add_tenant(engine)
    assert tenant_training(engine, tenant_id) == TRAINING
    assert handoff_settings(engine, tenant_id).timezone == "Europe/Madrid"
    assert payment_settings(engine, tenant_id).stripe_account is None
    assert tenant_name(engine, tenant_id) == "Shop"

    changed = {"tone": "brisk", "handoff": {"timezone": "Asia/Tokyo"}, "payments": {"stripe_account": "acct_123"}}
    with session_scope(engine) as session:
        row = session.get(Tenant, tenant_id)
        assert row is not None
        row.training = json.dumps(changed)
        row.name = "Renamed"
        session.add(row)

    assert tenant_training(engine, tenant_id) == changed
    assert handoff_settings(engine, tenant_id).timezone == "Asia/Tokyo"
    assert payment_settings(engine, tenant_id).stripe_account == "acct_123"
    assert tenant_name(engine, tenant_id) == "Renamed"


def test_a_committed_notify_secret_is_seen_at_once_by_handoff_settings(engine: Engine) -> None:
    tenant_id = add_tenant(engine)
    assert handoff_settings(engine, tenant_id).notify_secret == NOTIFY_SECRET

    with session_scope(engine) as session:
        row = session.get(Tenant, tenant_id)
        assert row is not None
        row.notify_secret = "whsec_rotated"
        session.add(row)

    assert handoff_settings(engine, tenant_id).notify_secret == "whsec_rotated"


def test_a_read_between_the_flush_and_the_commit_leaves_no_old_account_cached(engine: Engine) -> None:
    account_id = add_account(engine, add_tenant(engine))
    with Session(engine) as session:
        row = session.get(ChannelAccount, account_id)
        assert row is not None
        row.access_token = "rotated-token"
        session.add(row)
        session.flush()
        # Another reader still sees the committed row, and may cache it, until this commit.
        assert (found(engine) or pytest.fail("not found")).access_token == ACCESS_TOKEN
        assert (account_by_id(engine, account_id) or pytest.fail("not found")).access_token == ACCESS_TOKEN
        session.commit()

    assert (found(engine) or pytest.fail("not found")).access_token == "rotated-token"
    assert (account_by_id(engine, account_id) or pytest.fail("not found")).access_token == "rotated-token"


def test_a_read_between_the_flush_and_the_commit_of_a_delete_leaves_nothing_cached(engine: Engine) -> None:
    account_id = add_account(engine, add_tenant(engine))
    with Session(engine) as session:
        session.delete(session.get(ChannelAccount, account_id))
        session.flush()
        assert found(engine) is not None
        assert account_by_id(engine, account_id) is not None
        session.commit()

    assert found(engine) is None
    assert account_by_id(engine, account_id) is None


def test_a_read_between_the_flush_and_the_commit_leaves_no_old_tenant_cached(engine: Engine) -> None:
    tenant_id = add_tenant(engine)
    with Session(engine) as session:
        row = session.get(Tenant, tenant_id)
        assert row is not None
        row.notify_secret = "whsec_rotated"
        row.training = json.dumps({"tone": "brisk"})
        session.add(row)
        session.flush()
        assert handoff_settings(engine, tenant_id).notify_secret == NOTIFY_SECRET
        assert tenant_training(engine, tenant_id) == TRAINING
        session.commit()

    assert handoff_settings(engine, tenant_id).notify_secret == "whsec_rotated"
    assert tenant_training(engine, tenant_id) == {"tone": "brisk"}


def test_repeated_reads_with_no_change_do_not_query_the_database(engine: Engine) -> None:
    tenant_id = add_tenant(engine)
    account_id = add_account(engine, tenant_id)
    statements = StatementCounter(engine)

    found(engine)
    account_by_id(engine, account_id)
    tenant_training(engine, tenant_id)
    first_reads = statements.count
    assert first_reads >= 3

    for _ in range(3):
        found(engine)
        account_by_id(engine, account_id)
        tenant_training(engine, tenant_id)
        handoff_settings(engine, tenant_id)
        payment_settings(engine, tenant_id)
        tenant_name(engine, tenant_id)
    assert statements.count == first_reads


def test_a_commit_to_another_table_keeps_the_settings_cached(engine: Engine) -> None:
    tenant_id = add_tenant(engine)
    tenant_training(engine, tenant_id)
    statements = StatementCounter(engine)
    with session_scope(engine) as session:
        session.add(OutboxRow(topic="t", key="k", payload="{}", headers="{}", producer="test"))
    after_commit = statements.count
    tenant_training(engine, tenant_id)
    assert statements.count == after_commit


def test_a_change_made_outside_the_orm_is_seen_once_the_ttl_passes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Clock:
        now = 1000.0

        def monotonic(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(readcache, "time", clock)
    tenant_id = add_tenant(engine)
    assert tenant_name(engine, tenant_id) == "Shop"

    # As another process would: no mapper event here, so only the TTL ends the cached value.
    with engine.begin() as connection:
        connection.execute(update(Tenant).where(Tenant.id == tenant_id).values(name="Elsewhere"))  # type: ignore[arg-type]
    clock.now += SETTINGS_TTL_SECONDS - 0.1
    assert tenant_name(engine, tenant_id) == "Shop"
    clock.now += 0.2
    assert tenant_name(engine, tenant_id) == "Elsewhere"


def test_tenant_training_returns_a_fresh_dict_each_call(engine: Engine) -> None:
    tenant_id = add_tenant(engine)
    first = tenant_training(engine, tenant_id)
    first["tone"] = "mutated"
    first["faq"].append({"q": "added", "a": "by a caller"})
    first["handoff"]["timezone"] = "Mars/Olympus"
    assert tenant_training(engine, tenant_id) == TRAINING
    assert handoff_settings(engine, tenant_id).timezone == "Europe/Madrid"
    assert tenant_training(engine, tenant_id) is not tenant_training(engine, tenant_id)


def test_the_account_view_repr_hides_its_secrets(engine: Engine) -> None:
    account_id = add_account(engine, add_tenant(engine))
    view = account_by_id(engine, account_id)
    assert view is not None
    assert view.app_secret == APP_SECRET and view.access_token == ACCESS_TOKEN
    for text in (repr(view), str(view), f"{view}", repr([view])):
        assert str(account_id) in text
        assert APP_SECRET not in text
        assert ACCESS_TOKEN not in text
        assert "verify-" not in text


def test_the_tenant_and_handoff_reprs_hide_the_notify_secret_and_training() -> None:
    tenant = TenantView(name="Shop", training=json.dumps({"private": "faq-answer-3b1"}), notify_secret=NOTIFY_SECRET)
    settings = HandoffSettings(notify_url="https://hooks.example/h", notify_secret=NOTIFY_SECRET)
    for text in (repr(tenant), str(tenant), repr(settings), str(settings), repr([tenant, settings])):
        assert NOTIFY_SECRET not in text
        assert "faq-answer-3b1" not in text
    assert "Shop" in repr(tenant)
    assert "https://hooks.example/h" in repr(settings)
