"""A stateful fake of Stripe's Checkout Sessions API, kept in Redis, that the real stripe-python SDK can drive.

Sessions, their charges and an event log (`GET /v1/events`) live in Redis under one prefix, so every
process sharing that Redis sees the same sandbox. Each change is recorded as an event and, when a
webhook URL is set, posted there signed as Stripe signs. Objects created with a `Stripe-Account`
header live in that Connect account and are invisible without it.
"""

import json
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final
from urllib.parse import parse_qsl

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from redis.asyncio import Redis

from sellmesh.sandbox import stripe_objects as objects
from sellmesh.sandbox.stripe_events import EventLog
from sellmesh.sandbox.stripe_form import (
    FormError,
    FormValue,
    as_dict,
    as_list,
    as_metadata,
    as_str,
    as_uint,
    parse_form,
    reject_unknown,
)
from sellmesh.sandbox.stripe_objects import Emitted, Record, StripeApiError
from sellmesh.sandbox.stripe_state import SandboxStore
from sellmesh.settings import SANDBOX_STRIPE_WEBHOOK_SECRET

PREFIX: Final = "sandbox:stripe:"
MIN_EXPIRY_SECONDS: Final = 30 * 60
MAX_EXPIRY_SECONDS: Final = 24 * 3600
CREATE_PARAMS: Final = (
    "mode", "line_items", "client_reference_id", "metadata", "payment_intent_data", "success_url", "cancel_url",
    "expires_at", "customer_email",
)  # fmt: skip
HOOKS: Final[dict[str, Callable[[Record, int], Emitted]]] = {
    "pay": objects.pay,
    "pay_delayed": lambda record, now: objects.pay(record, now, delayed=True),
    "delayed_succeeded": lambda record, now: objects.settle_delayed(record, now, succeeded=True),
    "delayed_failed": lambda record, now: objects.settle_delayed(record, now, succeeded=False),
    "refund": objects.refund,
    "dispute": objects.dispute,
}


class _StripeRoute(APIRoute):
    """Renders errors as Stripe's error JSON (a router, unlike an app, cannot register exception handlers)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except FormError as exc:
                return StripeApiError(400, str(exc), param=exc.param).response()
            except StripeApiError as exc:
                return exc.response()

        return route


def _caller(request: Request) -> tuple[str, str | None]:
    """The API key (checked) and the Connect account the request acts for."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.startswith("sk_"):
        raise StripeApiError(401, "Invalid or missing API key; send Authorization: Bearer sk_...")
    return key, request.headers.get("stripe-account") or None


async def _form(request: Request) -> dict[str, FormValue]:
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StripeApiError(400, "The request body is not UTF-8") from exc
    return parse_form(parse_qsl(text, keep_blank_values=True, max_num_fields=5000))


def _query(request: Request, allowed: tuple[str, ...] = ()) -> dict[str, FormValue]:
    params = parse_form(request.query_params.multi_items())
    reject_unknown(params, allowed)
    return params


class StripeSandbox:
    """Checkout Sessions: create (idempotent), retrieve, list by PaymentIntent, expire; Charges; Events; a pay
    page; and unauthenticated test hooks standing for the customer and the bank (`/_test/sessions/{id}/{hook}`
    with hook = pay, pay_delayed, delayed_succeeded, delayed_failed, refund, dispute)."""

    def __init__(
        self,
        redis: Redis,
        *,
        base_url: str,
        clock: Callable[[], float] = time.time,
        prefix: str = PREFIX,
        webhook_url: str | None = None,
        webhook_secret: str = SANDBOX_STRIPE_WEBHOOK_SECRET,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.events = EventLog(
            redis, prefix=prefix, webhook_url=webhook_url, webhook_secret=webhook_secret, http=http, clock=clock
        )
        self.store = SandboxStore(redis, prefix=prefix, events=self.events, clock=clock)

    def _create(self, params: dict[str, FormValue], account: str | None) -> Record:
        reject_unknown(params, CREATE_PARAMS)
        if params.get("mode") != "payment":
            raise FormError("The sandbox supports only mode=payment", param="mode")
        items = as_list(params.get("line_items"), "line_items")
        lines = [objects.line_item(item, f"line_items[{i}]") for i, item in enumerate(items)]
        if not 1 <= len(lines) <= 100 or len({line["currency"] for line in lines}) != 1:
            raise FormError("Payment mode needs 1 to 100 line_items in one currency", param="line_items")
        now = int(self.clock())
        expires_at = as_uint(params.get("expires_at"), "expires_at") or now + MAX_EXPIRY_SECONDS
        if not now + MIN_EXPIRY_SECONDS <= expires_at <= now + MAX_EXPIRY_SECONDS:
            raise FormError("expires_at must be 30 minutes to 24 hours from now", param="expires_at")
        intent = as_dict(params.get("payment_intent_data"), "payment_intent_data")
        reject_unknown(intent, ("metadata",), prefix="payment_intent_data")
        session_id = f"cs_test_{secrets.token_hex(24)}"
        total = sum(line["unit_amount"] * line["quantity"] for line in lines)
        session = {
            "id": session_id, "object": "checkout.session", "mode": "payment", "status": "open",
            "payment_status": "unpaid", "amount_subtotal": total, "amount_total": total,
            "currency": lines[0]["currency"], "created": now, "expires_at": expires_at, "livemode": False,
            "client_reference_id": as_str(params.get("client_reference_id"), "client_reference_id", max_length=200),
            "customer_email": as_str(params.get("customer_email"), "customer_email"),
            "metadata": as_metadata(params.get("metadata"), "metadata"),
            "success_url": as_str(params.get("success_url"), "success_url"),
            "cancel_url": as_str(params.get("cancel_url"), "cancel_url"),
            "payment_intent": None,  # as in current API versions: created when the customer pays
            "url": f"{self.base_url}/sandbox/stripe/pay/{session_id}",
        }  # fmt: skip
        # Kept beside the session for the PaymentIntent the reconciler will later see.
        intent_metadata = as_metadata(intent.get("metadata"), "payment_intent_data[metadata]")
        return {"session": session, "lines": lines, "intent_metadata": intent_metadata, "account": account}

    async def _hook(self, session_id: str, hook: str) -> Record:
        """A test hook acts as the customer or the bank, whichever account the session lives in."""
        raw = await self.store.redis.get(self.store.key("session", session_id))
        if raw is None or hook not in HOOKS:
            raise objects.missing("checkout.session" if raw is None else "test hook", session_id if raw else hook)
        return await self.store.change(session_id, HOOKS[hook], account=json.loads(raw).get("account"))

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/sandbox/stripe", tags=["sandbox"], route_class=_StripeRoute)
        store = self.store

        @router.post("/v1/checkout/sessions")
        async def create(request: Request) -> Response:
            key, account = _caller(request)
            params = await _form(request)

            async def run() -> Record:
                record = self._create(params, account)
                await store.add(record)
                return dict(record["session"])

            return await store.idempotent(request, f"{key}:{account or ''}", params, run)

        @router.get("/v1/checkout/sessions")
        async def list_sessions(request: Request) -> Response:
            _, account = _caller(request)
            params = _query(request, ("payment_intent", "limit"))
            intent = as_str(params.get("payment_intent"), "payment_intent")
            if intent is None:
                raise FormError("The sandbox lists sessions only by payment_intent", param="payment_intent")
            found = await store.find("pi", intent, account)
            data = [] if found is None else [found["session"]]
            return JSONResponse({"object": "list", "data": data, "has_more": False, "url": "/v1/checkout/sessions"})

        @router.get("/v1/checkout/sessions/{session_id}")
        async def retrieve(session_id: str, request: Request) -> Response:
            _, account = _caller(request)
            _query(request)  # no `expand` in the sandbox yet
            return JSONResponse((await store.get(session_id, account))["session"])

        @router.post("/v1/refunds")
        async def create_refund(request: Request) -> Response:
            """A full refund of a PaymentIntent's charge, as the owner's refund asks (`/v1/refunds`)."""
            key, account = _caller(request)
            params = await _form(request)
            reject_unknown(params, ("payment_intent",))
            intent = as_str(params.get("payment_intent"), "payment_intent")
            if intent is None:
                raise FormError("Missing required param: payment_intent.", param="payment_intent")

            async def run() -> Record:
                found = await store.find("pi", intent, account)
                if found is None:
                    raise objects.missing("payment_intent", intent)
                charge = (await store.change(found["session"]["id"], objects.refund, account=account))["charge"]
                return {
                    "id": f"re_test_{secrets.token_hex(12)}",
                    "object": "refund",
                    "amount": charge["amount"],
                    "charge": charge["id"],
                    "currency": charge["currency"],
                    "payment_intent": intent,
                    "status": "succeeded",
                }

            return await store.idempotent(request, f"{key}:{account or ''}", params, run)

        @router.post("/v1/checkout/sessions/{session_id}/expire")
        async def expire(session_id: str, request: Request) -> Response:
            key, account = _caller(request)
            params = await _form(request)
            reject_unknown(params, ())

            async def run() -> Record:
                return dict((await store.change(session_id, objects.expire, account=account))["session"])

            return await store.idempotent(request, f"{key}:{account or ''}", params, run)

        @router.get("/v1/charges/{charge_id}")
        async def charge(charge_id: str, request: Request) -> Response:
            _, account = _caller(request)
            _query(request)
            found = await store.find("charge", charge_id, account)
            if found is None:
                raise objects.missing("charge", charge_id)
            return JSONResponse(found["charge"])

        @router.get("/v1/events")
        async def list_events(request: Request) -> Response:
            _, account = _caller(request)
            params = _query(request, ("created", "type", "types", "limit", "starting_after"))
            return JSONResponse(await self.events.list(params, account=account))

        @router.get("/v1/events/{event_id}")
        async def event(event_id: str, request: Request) -> Response:
            _, account = _caller(request)
            found = await self.events.get(event_id)
            if found is None or found.get("account") != account:
                raise objects.missing("event", event_id)
            return JSONResponse(found)

        @router.post("/_test/sessions/{session_id}/{hook}")
        async def test_hook(session_id: str, hook: str) -> Response:
            return JSONResponse((await self._hook(session_id, hook))["session"])

        @router.get("/pay/{session_id}")
        async def page(session_id: str) -> Response:
            raw = await store.redis.get(store.key("session", session_id))
            try:
                account = None if raw is None else json.loads(raw).get("account")
                return HTMLResponse(objects.page(await store.get(session_id, account)))
            except StripeApiError:
                return HTMLResponse("<h1>No such checkout session</h1>", status_code=404)

        @router.post("/pay/{session_id}")
        async def pay_from_page(session_id: str) -> Response:
            try:
                record = await self._hook(session_id, "pay")
            except StripeApiError as exc:
                return HTMLResponse(f"<h1>{exc}</h1>", status_code=exc.status)
            success_url = record["session"].get("success_url")
            if success_url:
                return RedirectResponse(success_url.replace("{CHECKOUT_SESSION_ID}", session_id), status_code=303)
            return HTMLResponse(objects.page(record))

        return router
