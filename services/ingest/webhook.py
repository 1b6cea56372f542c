"""POST /webhooks/meta and the GET subscription handshake: verify, publish the raw body, answer fast."""

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from schemas.channel import RawWebhook
from schemas.topics import CHANNEL_RAW, dlq_of
from sellmesh.broker import publish
from sellmesh.db import in_thread
from sellmesh.logging import log_context
from sellmesh.metrics import webhook_rejected, webhook_verified
from sellmesh.service import MeshContext, now
from services.gateway.query import ChannelAccountView, find_channel_account, verify_token_known
from services.ingest.routing import MAX_ACCOUNTS, TooManyAccounts, UnroutableWebhook, account_ids, channel_of
from services.ingest.signature import header_well_formed, signature_ok

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    pass


async def read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def reject(status: int, reason: str) -> JSONResponse:
    webhook_rejected("meta", reason)
    return JSONResponse({"error": reason}, status_code=status)


def webhook_router(ctx: MeshContext) -> APIRouter:
    router = APIRouter(tags=["webhooks"])
    settings = ctx.settings
    platform_secret = settings.meta_app_secret.get_secret_value() if settings.meta_app_secret else ""

    @router.get("/webhooks/meta")
    async def handshake(
        mode: Annotated[str, Query(alias="hub.mode", max_length=32)] = "",
        challenge: Annotated[str, Query(alias="hub.challenge", max_length=128)] = "",
        token: Annotated[str, Query(alias="hub.verify_token", max_length=256)] = "",
    ) -> Response:
        if mode == "subscribe" and challenge and await in_thread(verify_token_known, ctx.engine, token):
            webhook_verified("meta", "handshake_ok")
            return PlainTextResponse(challenge)
        return reject(403, "handshake_refused")

    @router.post("/webhooks/meta")
    async def receive(request: Request) -> Response:
        try:
            raw = await read_capped(request, settings.meta_max_body_bytes)
        except BodyTooLarge:
            return reject(413, "body_too_large")
        header = request.headers.get("x-hub-signature-256")
        if not header_well_formed(header):
            return reject(401, "missing_signature")
        if platform_secret and not signature_ok(raw, header, platform_secret):
            return reject(401, "bad_signature")
        try:
            body = json.loads(raw)
            text = raw.decode("utf-8")
        except (ValueError, RecursionError):  # RecursionError: arrays nested deeper than the parser goes
            return reject(400, "invalid_json")
        if not isinstance(body, dict):
            return reject(400, "invalid_json")
        try:
            channel = channel_of(body)
            # The cap spares the database lookups for bodies nobody has verified yet; one the platform's secret
            # verified is Meta's own batch, however many of the app's accounts it names.
            external_ids = account_ids(body, limit=None if platform_secret else MAX_ACCOUNTS)
        except TooManyAccounts:
            return reject(400, "too_many_accounts")
        except UnroutableWebhook:
            # Signed by our app but a shape we do not handle: acknowledge, or Meta retries for days.
            if platform_secret:
                webhook_verified("meta", "ignored")
                return JSONResponse({"status": "ignored"})
            return reject(400, "unroutable")

        def lookup(external_id: str) -> ChannelAccountView | None:
            return find_channel_account(ctx.engine, channel=channel.value, external_id=external_id)

        accounts = [await in_thread(lookup, external_id) for external_id in external_ids]
        known = [a for a in accounts if a is not None]
        if not all(signature_ok(raw, header, a.app_secret) for a in known) or (not known and not platform_secret):
            return reject(401, "bad_signature")
        if not known:
            await keep_unroutable(ctx, raw, header or "", external_ids)
            return reject_accepted("unknown_account")
        await publish_raw(ctx, known[0], text, platform_signed=bool(platform_secret), signed_by=known)
        webhook_verified("meta", "accepted")
        return JSONResponse({"status": "accepted"})

    return router


def reject_accepted(reason: str) -> JSONResponse:
    webhook_verified("meta", reason)
    return JSONResponse({"status": "kept", "reason": reason})


def raw_webhook(
    account: ChannelAccountView,
    text: str,
    *,
    event_id: uuid.UUID,
    occurred_at: datetime,
    received_at: datetime,
    platform_signed: bool,
    signed_by: Sequence[ChannelAccountView],
) -> tuple[RawWebhook, str]:
    """The channel.raw.v1 message for a verified body addressed to `account`, and its Kafka key.

    The edge publishes it, and so does `sellmesh dlq reingest` for a body the edge kept; each picks the id and the
    moments: the edge's is a first cause with a fresh id, a reingested one's id derives from where it was kept.
    Each also says what verified the body (`platform_signed`, or the accounts in `signed_by` with their own
    secrets): the normalizer takes only the items of those accounts, so an entry for an account nobody
    verified (connected later, perhaps by another tenant) is never read as that account's message.
    """
    envelope = RawWebhook(
        event_id=event_id,
        tenant_id=account.tenant_id,
        correlation_id=event_id,  # the first cause: everything it leads to carries its id as correlation id
        occurred_at=occurred_at,
        producer="ingest",
        channel_account_id=str(account.id),
        body=text,
        received_at=received_at,
        platform_signed=platform_signed,
        # Beside the platform's signature the list adds nothing, and a batch of Meta's may name many accounts.
        signed_by=() if platform_signed else tuple(str(a.id) for a in signed_by),
    )
    # Keyed by our account id, so one account's webhooks reach the normalizer in the order they came.
    return envelope, str(account.id)


async def publish_raw(
    ctx: MeshContext,
    account: ChannelAccountView,
    text: str,
    *,
    platform_signed: bool,
    signed_by: Sequence[ChannelAccountView],
) -> None:
    at = now()
    raw, key = raw_webhook(
        account,
        text,
        event_id=uuid.uuid4(),
        occurred_at=at,
        received_at=at,
        platform_signed=platform_signed,
        signed_by=signed_by,
    )
    with log_context(tenant_id=raw.tenant_id, correlation_id=raw.correlation_id, event_id=raw.event_id):
        await publish(ctx.broker, CHANNEL_RAW, raw, key=key)
        log.info("webhook accepted", extra={"bytes": len(text)})


async def keep_unroutable(ctx: MeshContext, raw: bytes, signature: str, external_ids: list[str]) -> None:
    """A verified body for accounts nobody connected: kept in the DLQ for on-call, never dropped."""
    headers: dict[str, Any] = {
        "x-error-kind": "unknown_channel_account",
        "x-error-message": f"no channel account for {', '.join(external_ids)[:500]}",
        "x-original-topic": CHANNEL_RAW,
        "x-signature": signature,
    }
    await ctx.broker.publish(raw, topic=dlq_of(CHANNEL_RAW), key=external_ids[0].encode(), headers=headers)
    log.warning("webhook for unknown channel account kept in DLQ", extra={"accounts": external_ids[:5]})
