"""The sandbox's Stripe objects as plain dicts: a Checkout Session record, what customers and tests do to it,
the events each change causes, and the pay page."""

import html
import re
import secrets
from typing import Any, Final, TypeAlias

from fastapi.responses import JSONResponse

from sellmesh.sandbox.stripe_form import FormError, FormValue, as_dict, as_str, as_uint, reject_unknown

Record: TypeAlias = dict[str, Any]
Emitted: TypeAlias = list[tuple[str, dict[str, Any]]]  # (event type, the object as it is after the change)

API_VERSION: Final = "2026-06-24.dahlia"
ZERO_DECIMAL: Final = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd"})


class StripeApiError(Exception):
    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": kind, "message": message, "code": code, "param": param}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status)


def missing(kind: str, object_id: str) -> StripeApiError:
    return StripeApiError(404, f"No such {kind}: '{object_id}'", code="resource_missing")


def line_item(value: FormValue, param: str) -> Record:
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


def lapse(record: Record, now: float) -> Emitted:
    """An open session past its expiry becomes expired, as Stripe's own job would make it."""
    session = record["session"]
    if session["status"] == "open" and now >= session["expires_at"]:
        session.update(status="expired", url=None)
        return [("checkout.session.expired", dict(session))]
    return []


def expire(record: Record, now: int) -> Emitted:
    session = record["session"]
    if session["status"] != "open":
        raise StripeApiError(400, "Only Checkout Sessions with a status of `open` can be expired.")
    session.update(status="expired", url=None)
    return [("checkout.session.expired", dict(session))]


def _charge(record: Record, now: int) -> dict[str, Any]:
    session = record["session"]
    record["charge"] = {
        "id": f"ch_test_{secrets.token_hex(12)}", "object": "charge", "amount": session["amount_total"],
        "amount_captured": session["amount_total"], "amount_refunded": 0, "refunded": False, "disputed": False,
        "currency": session["currency"], "payment_intent": session["payment_intent"], "paid": True,
        "status": "succeeded", "created": now, "livemode": False,
        "metadata": {},  # as at Stripe: a Charge does not inherit the PaymentIntent's metadata
    }  # fmt: skip
    return dict(record["charge"])


def pay(record: Record, now: int, *, delayed: bool = False) -> Emitted:
    """The customer pays; with `delayed` a bank debit is pending (complete, unpaid) until `settle_delayed`."""
    session = record["session"]
    if session["status"] == "expired":
        raise StripeApiError(400, "This Checkout Session has expired and can no longer be paid.")
    if session["status"] != "open":  # paying twice is a no-op, like a customer reloading the success page
        return []
    intent = f"pi_test_{secrets.token_hex(12)}"
    session.update(status="complete", url=None, payment_intent=intent, payment_status="unpaid" if delayed else "paid")
    if delayed:
        record["delayed"] = "pending"
    else:
        _charge(record, now)
    return [("checkout.session.completed", dict(session))]


def settle_delayed(record: Record, now: int, *, succeeded: bool) -> Emitted:
    session = record["session"]
    if record.get("delayed") != "pending":
        raise StripeApiError(400, "This Checkout Session has no delayed payment pending.")
    record["delayed"] = "succeeded" if succeeded else "failed"
    if not succeeded:
        return [("checkout.session.async_payment_failed", dict(session))]
    session["payment_status"] = "paid"
    _charge(record, now)
    return [("checkout.session.async_payment_succeeded", dict(session))]


def refund(record: Record, now: int) -> Emitted:
    """A full refund of the session's charge."""
    charge = record.get("charge")
    if charge is None:
        raise StripeApiError(400, "This Checkout Session has no charge to refund.")
    if charge["disputed"]:
        raise StripeApiError(400, f"Charge {charge['id']} has been disputed.", code="charge_disputed")
    if charge["refunded"]:
        raise StripeApiError(400, f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
    charge.update(refunded=True, amount_refunded=charge["amount"])
    return [("charge.refunded", dict(charge))]


def dispute(record: Record, now: int) -> Emitted:
    charge = record.get("charge")
    if charge is None or charge["disputed"]:
        raise StripeApiError(400, "This Checkout Session has no charge to dispute, or it is disputed already.")
    charge["disputed"] = True
    opened = {
        "id": f"dp_test_{secrets.token_hex(12)}", "object": "dispute", "amount": charge["amount"],
        "charge": charge["id"], "currency": charge["currency"], "payment_intent": charge["payment_intent"],
        "reason": "fraudulent", "status": "needs_response", "created": now, "livemode": False, "metadata": {},
    }  # fmt: skip
    return [("charge.dispute.created", opened)]


def event(event_type: str, obj: dict[str, Any], *, now: int, account: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"evt_test_{secrets.token_hex(12)}", "object": "event", "api_version": API_VERSION, "created": now,
        "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "type": event_type,
    }  # fmt: skip
    if account:
        body["account"] = account
    return body


def page(record: Record) -> str:
    session = record["session"]
    digits = 0 if session["currency"] in ZERO_DECIMAL else 2
    amount = f"{session['amount_total'] / 10**digits:.{digits}f} {session['currency'].upper()}"
    rows = "".join(f"<li>{line['quantity']} x {html.escape(line['description'])}</li>" for line in record["lines"])
    form = f'<form method="post" action="/sandbox/stripe/pay/{html.escape(session["id"])}">'
    button = f"{form}<button>Pay (sandbox)</button></form>" if session["status"] == "open" else ""
    status = html.escape(f"{session['status']} / {session['payment_status']}")
    return f"<!doctype html><title>Sandbox checkout</title><h1>Pay {amount}</h1><ul>{rows}</ul><p>{status}</p>{button}"
