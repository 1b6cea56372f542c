"""Buy, pay on the sandbox's checkout, and hear back: Stripe's signed webhook through the reconciler to a paid order."""

import re
import uuid

import pytest

from schemas.orders import OrderSnapshot, OrderState
from sellmesh.service import derived_id
from services.gateway.query import find_channel_account
from services.orders.query import latest_order_for_conversation
from tests.e2e.conftest import Shop, eventually, new_customer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="package")]

SESSION_IN_LINK = re.compile(r"/sandbox/stripe/pay/(cs_test_[0-9a-f]+)")


def conversation_of(shop: Shop, customer: str) -> str:
    account = find_channel_account(shop.engine, channel="whatsapp", external_id=shop.phone_number_id)
    assert account is not None
    return str(derived_id("conversation", shop.tenant_id, account.id, customer))


async def test_paying_on_the_checkout_page_marks_the_order_paid_and_thanks_the_customer(shop: Shop) -> None:
    customer = new_customer()
    await shop.say(customer, "I want two espresso beans")
    await shop.wait_for_replies(customer, 1)
    await shop.say(customer, "how do I pay?")
    replies = await shop.wait_for_replies(customer, 3)
    link = next(r["text"] for r in replies if SESSION_IN_LINK.search(r["text"]))
    match = SESSION_IN_LINK.search(link)
    assert match is not None
    session_id = match.group(1)

    paid = await shop.http.post(f"{shop.base_url}/sandbox/stripe/_test/sessions/{session_id}/pay")
    assert (paid.status_code, paid.json()["payment_status"]) == (200, "paid")

    thanks = await shop.wait_for_replies(customer, len(replies) + 1, within=20)
    assert any("We received your payment of 25.00 EUR" in r["text"] for r in thanks)
    conversation = conversation_of(shop, customer)

    async def order() -> OrderSnapshot | None:
        return latest_order_for_conversation(shop.engine, shop.tenant_id, conversation)

    settled = await eventually(order, lambda o: o is not None and o.state is OrderState.PAID)
    assert settled.total.amount_minor == 2500

    again = await shop.http.post(f"{shop.base_url}/sandbox/stripe/_test/sessions/{session_id}/pay")
    assert again.status_code == 200  # paying twice is a no-op at Stripe, and nothing more reaches the customer
    await shop.say(customer, f"thanks {uuid.uuid4().hex[:4]}")
    after = await shop.wait_for_replies(customer, len(thanks) + 1)
    assert sum("We received your payment" in r["text"] for r in after) == 1
