"""An echo is ours when Meta's message id or the send id it carried names one of this tenant's sends."""

import uuid

from sqlalchemy import Engine
from sqlmodel import Session

from services.ingest.inbound import Normalizer
from services.ingest.store import OutboundSend

TENANT = uuid.uuid4()


def _send(engine: Engine, *, tenant_id: uuid.UUID = TENANT, provider_id: str | None = None) -> uuid.UUID:
    send_id = uuid.uuid4()
    with Session(engine) as session:
        session.add(
            OutboundSend(
                event_id=send_id,
                tenant_id=tenant_id,
                conversation_id="c",
                author="ai",
                status="sending" if provider_id is None else "sent",
                provider_message_id=provider_id,
            )
        )
        session.commit()
    return send_id


def test_an_echo_is_ours_by_the_message_id_meta_gave_back(engine: Engine) -> None:
    _send(engine, provider_id="m_known")
    with Session(engine) as session:
        assert Normalizer._sent_by_us(session, TENANT, "m_known", None)


def test_an_echo_of_a_send_that_stopped_mid_way_is_ours_by_its_send_id(engine: Engine) -> None:
    # The worker died before it learned the message id: only the metadata ties the echo to the send.
    send_id = _send(engine)
    with Session(engine) as session:
        assert Normalizer._sent_by_us(session, TENANT, "m_unknown", str(send_id))


def test_an_echo_of_a_part_whose_row_is_not_written_yet_is_ours_by_its_message(engine: Engine) -> None:
    # A part's own row is written after its request returns; the echo can arrive first. Its tag names the
    # message's row, claimed before any request went out.
    send_id = _send(engine)
    with Session(engine) as session:
        assert Normalizer._sent_by_us(session, TENANT, "m_part", f"{send_id}:0")


def test_an_echo_naming_another_tenants_send_or_garbage_is_not_ours(engine: Engine) -> None:
    other = _send(engine, tenant_id=uuid.uuid4())
    with Session(engine) as session:
        assert not Normalizer._sent_by_us(session, TENANT, "m_x", str(other))
        assert not Normalizer._sent_by_us(session, TENANT, "m_x", f"{other}:0")
        assert not Normalizer._sent_by_us(session, TENANT, "m_x", "not-a-uuid")
        assert not Normalizer._sent_by_us(session, TENANT, "m_x", "not-a-uuid:0")
        assert not Normalizer._sent_by_us(session, TENANT, "m_x", str(uuid.uuid4()))
        assert not Normalizer._sent_by_us(session, TENANT, "m_x", None)


def test_a_failed_status_that_comes_before_the_send_is_recorded_is_ours_by_its_tag(engine: Engine) -> None:
    # Meta answered the post and then reported the message failed before the sender recorded its message id:
    # the status's tag names the send row, claimed before the post.
    send_id = _send(engine)
    with Session(engine) as session:
        assert Normalizer._sent_by_us(session, TENANT, "wamid.new", str(send_id))
        assert not Normalizer._sent_by_us(session, TENANT, "wamid.new", None)
        assert not Normalizer._sent_by_us(session, uuid.uuid4(), "wamid.new", str(send_id))


def test_another_tenants_send_is_not_ours_by_its_message_id(engine: Engine) -> None:
    _send(engine, tenant_id=uuid.uuid4(), provider_id="wamid.theirs")
    with Session(engine) as session:
        assert not Normalizer._sent_by_us(session, TENANT, "wamid.theirs", None)
