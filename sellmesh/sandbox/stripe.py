"""A stateful fake of Stripe's Checkout Sessions API, kept in Redis, that the real stripe-python SDK can drive."""

import hashlib
import html
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from redis.asyncio import Redis
from redis.exceptions import WatchError

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

PREFIX: Final = "sandbox:stripe:"
IDEMPOTENCY_TTL_SECONDS: Final = 24 * 3600  # Stripe prunes keys after 24 h
CLAIM_TTL_SECONDS: Final = 60
SESSION_TTL_SECONDS: Final = 30 * 24 * 3600
MIN_EXPIRY_SECONDS: Final = 30 * 60
MAX_EXPIRY_SECONDS: Final = 24 * 3600
CREATE_PARAMS: Final = (
    "mode", "line_items", "client_reference_id", "metadata", "payment_intent_data", "success_url", "cancel_url",
    "expires_at", "customer_email",
)  # fmt: skip
ZERO_DECIMAL: Final = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd"})

Record: TypeAlias = dict[str, Any]


class StripeApiError(Exception):
    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": kind, "message": message, "code": code, "param": param}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status)


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


def _api_key(request: Request) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.startswith("sk_"):
        raise StripeApiError(401, "Invalid or missing API key; send Authorization: Bearer sk_...")
    return key


async def _form(request: Request) -> dict[str, FormValue]:
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StripeApiError(400, "The request body is not UTF-8") from exc
    return parse_form(parse_qsl(text, keep_blank_values=True, max_num_fields=5000))


def _line(value: FormValue, param: str) -> Record:
    item = as_dict(value, param)
    reject_unknown(item, ("price_data", "quantity"), prefix=param)
    price = as_dict(item.get("price_data"), f"{param}[price_data]")
    reject_unknown(price, ("currency", "unit_amount", "product_data", "tax_behavior"), prefix=f"{param}[price_data]")
    name = as_str(as_dict(price.get("product_data"), param).get("name"), f"{param}[price_data][product_data][name]")
    currency = as_str(price.get("currency"), f"{param}[price_data][currency]") or ""
    amount = as_uint(price.get("unit_amount"), f"{param}[price_data][unit_amount]")
    quantity = as_uint(item.get("quantity"), f"{param}[quantity]")
    # No Price objects live in the sandbox, so complete inline price_data is the only way in.
    if not name or not re.fullmatch(r"[a-z]{3}", currency) or amount is None or not quantity:
        raise FormError("A line item needs price_data (currency, unit_amount, product name) and quantity", param=param)
    return {"description": name, "currency": currency, "unit_amount": amount, "quantity": quantity}


def _missing(session_id: str) -> StripeApiError:
    return StripeApiError(404, f"No such checkout.session: '{session_id}'", code="resource_missing")


def _expire(session: Record) -> None:
    if session["status"] != "open":
        raise StripeApiError(400, "Only Checkout Sessions with a status of `open` can be expired.")
    session.update(status="expired", url=None)


def _pay(session: Record) -> None:
    if session["status"] == "expired":
        raise StripeApiError(400, "This Checkout Session has expired and can no longer be paid.")
    if session["status"] == "open":  # paying twice is a no-op, like a customer reloading the success page
        intent = f"pi_test_{secrets.token_hex(12)}"
        session.update(status="complete", payment_status="paid", url=None, payment_intent=intent)


def _page(record: Record) -> str:
    session = record["session"]
    digits = 0 if session["currency"] in ZERO_DECIMAL else 2
    amount = f"{session['amount_total'] / 10**digits:.{digits}f} {session['currency'].upper()}"
    rows = "".join(f"<li>{line['quantity']} x {html.escape(line['description'])}</li>" for line in record["lines"])
    form = f'<form method="post" action="/sandbox/stripe/_test/sessions/{html.escape(session["id"])}/pay">'
    button = f"{form}<button>Pay (sandbox)</button></form>" if session["status"] == "open" else ""
    status = html.escape(f"{session['status']} / {session['payment_status']}")
    return f"<!doctype html><title>Sandbox checkout</title><h1>Pay {amount}</h1><ul>{rows}</ul><p>{status}</p>{button}"


class StripeSandbox:
    """Checkout Sessions: create (idempotent), retrieve, expire; plus a page and an unauthenticated test hook that pay.

    The hook needs no key because it stands for the customer on Stripe's hosted page, not for our server.
    """

    def __init__(self, redis: Redis, *, base_url: str, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.base_url = base_url.rstrip("/")
        self.clock = clock

    def _create(self, params: dict[str, FormValue]) -> Record:
        reject_unknown(params, CREATE_PARAMS)
        if params.get("mode") != "payment":
            raise FormError("The sandbox supports only mode=payment", param="mode")
        items = as_list(params.get("line_items"), "line_items")
        lines = [_line(item, f"line_items[{i}]") for i, item in enumerate(items)]
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
        return {"session": session, "lines": lines, "intent_metadata": intent_metadata}

    async def _get(self, session_id: str) -> Record:
        raw = await self.redis.get(f"{PREFIX}session:{session_id}")
        if raw is None:
            raise _missing(session_id)
        record: Record = json.loads(raw)
        if record["session"]["status"] == "open" and self.clock() >= record["session"]["expires_at"]:
            return await self._change(session_id, lambda _: None)  # _change writes the lapse down
        return record

    async def _change(self, session_id: str, change: Callable[[Record], None]) -> Record:
        """Read-modify-write under WATCH, so processes sharing one Redis never lose an update."""
        key = f"{PREFIX}session:{session_id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)  # executes at once while watching
                    if raw is None:
                        raise _missing(session_id)
                    record: Record = json.loads(raw)
                    session = record["session"]
                    if session["status"] == "open" and self.clock() >= session["expires_at"]:
                        session.update(status="expired", url=None)
                    change(session)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, json.dumps(record), keepttl=True)
                    await pipe.execute()
                    return record
                except WatchError:
                    continue

    async def _idempotent(self, request: Request, params: Record, run: Callable[[], Awaitable[Record]]) -> Response:
        """Stripe's rule: a key replays the first successful response; reusing it with other params is an error."""
        key = request.headers.get("idempotency-key")
        if key is None:
            return JSONResponse(await run())
        account = hashlib.sha256(_api_key(request).encode()).hexdigest()[:16]  # keys are per account; store no secret
        slot = f"{PREFIX}idempotency:{account}:{hashlib.sha256(key.encode()).hexdigest()}"
        fingerprint = hashlib.sha256(json.dumps([request.url.path, params], sort_keys=True).encode()).hexdigest()
        claim = json.dumps({"fingerprint": fingerprint, "body": None})
        if not await self.redis.set(slot, claim, nx=True, ex=CLAIM_TTL_SECONDS):
            stored = json.loads(await self.redis.get(slot) or claim)
            if stored["fingerprint"] != fingerprint:
                message = "Keys for idempotent requests can only be used with the same parameters they were first used"
                raise StripeApiError(400, message, kind="idempotency_error")
            if stored["body"] is None:
                raise StripeApiError(409, "A request with this idempotency key is running", kind="idempotency_error")
            return JSONResponse(stored["body"], headers={"Idempotent-Replayed": "true"})
        try:
            body = await run()
        except BaseException:
            await self.redis.delete(slot)  # as at Stripe, a request that failed validation stores nothing
            raise
        await self.redis.set(slot, json.dumps({"fingerprint": fingerprint, "body": body}), ex=IDEMPOTENCY_TTL_SECONDS)
        return JSONResponse(body)

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/sandbox/stripe", tags=["sandbox"], route_class=_StripeRoute)

        @router.post("/v1/checkout/sessions")
        async def create(request: Request) -> Response:
            _api_key(request)
            params = await _form(request)

            async def run() -> Record:
                record = self._create(params)
                key = f"{PREFIX}session:{record['session']['id']}"
                await self.redis.set(key, json.dumps(record), ex=SESSION_TTL_SECONDS)
                return dict(record["session"])

            return await self._idempotent(request, params, run)

        @router.get("/v1/checkout/sessions/{session_id}")
        async def retrieve(session_id: str, request: Request) -> Response:
            _api_key(request)
            reject_unknown(parse_form(request.query_params.multi_items()), ())  # no `expand` in the sandbox yet
            return JSONResponse((await self._get(session_id))["session"])

        @router.post("/v1/checkout/sessions/{session_id}/expire")
        async def expire(session_id: str, request: Request) -> Response:
            _api_key(request)
            params = await _form(request)
            reject_unknown(params, ())

            async def run() -> Record:
                return dict((await self._change(session_id, _expire))["session"])

            return await self._idempotent(request, params, run)

        @router.post("/_test/sessions/{session_id}/pay")
        async def pay(session_id: str) -> Response:
            return JSONResponse((await self._change(session_id, _pay))["session"])

        @router.get("/pay/{session_id}")
        async def page(session_id: str) -> Response:
            try:
                return HTMLResponse(_page(await self._get(session_id)))
            except StripeApiError:
                return HTMLResponse("<h1>No such checkout session</h1>", status_code=404)

        return router
