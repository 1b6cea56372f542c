"""The demo business `make run` seeds: a coffee roaster with a small catalog on WhatsApp, Messenger and Instagram."""

import json
import secrets
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from schemas.envelope import Channel
from sellmesh.db import session_scope
from services.gateway.admin import connect_channel_account, create_tenant
from services.gateway.query import find_channel_account, tenant_name
from services.orders.store import upsert_product

# The receiving account of each channel (WhatsApp phone_number_id, Page id, Instagram account id),
# and the customer `sellmesh chat` plays on it (a phone number, a PSID, an IGSID).
DEMO_ACCOUNTS = {
    Channel.WHATSAPP: ("100000000000001", "15551234567"),
    Channel.MESSENGER: ("200000000000002", "7000000000000001"),
    Channel.INSTAGRAM: ("17841400000000003", "8000000000000001"),
}
CATALOG = (
    ("ESP-250", "Espresso beans 250g", "Dark roast, chocolate and hazelnut notes", 1250, 40),
    ("FIL-1KG", "Filter coffee 1kg", "Light roast from Ethiopia, floral and citrus", 2900, 10),
    ("MUG-01", "Ceramic mug", "Handmade stoneware mug, 300 ml", 900, 25),
    ("GRN-01", "Hand grinder", "Steel burr hand grinder for espresso and filter", 4500, 5),
)


def seed_demo(engine: Engine, *, var_dir: Path) -> dict[str, Any]:
    """Create the demo business once; later calls return what was made (kept in var/demo.json)."""
    saved = var_dir / "demo.json"
    demo: dict[str, Any] | None = json.loads(saved.read_text()) if saved.exists() else None
    if demo is None or tenant_name(engine, uuid.UUID(demo["tenant_id"])) is None:
        demo = _new_business(engine)
    _connect_missing_accounts(engine, demo)
    var_dir.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(demo, indent=2))
    saved.chmod(0o600)  # it holds the owner key and the app secret
    return demo


def _new_business(engine: Engine) -> dict[str, Any]:
    tenant_id, owner_key = create_tenant(engine, name="Demo Coffee Roasters")
    with session_scope(engine) as session:
        for sku, name, description, price, stock in CATALOG:
            upsert_product(
                session,
                tenant_id=tenant_id,
                sku=sku,
                name=name,
                description=description,
                price_minor=price,
                currency="EUR",
                stock=stock,
            )
    # One Meta app for the three channels, so one app secret and one verify token, as Meta does it.
    return {
        "tenant_id": str(tenant_id),
        "owner_api_key": owner_key,
        "app_secret": secrets.token_hex(16),
        "verify_token": secrets.token_urlsafe(12),
        "channel_accounts": [],
    }


def _connect_missing_accounts(engine: Engine, demo: dict[str, Any]) -> None:
    accounts: list[dict[str, str]] = demo.setdefault("channel_accounts", [])
    known = {a["channel"] for a in accounts}
    for channel, (external_id, customer) in DEMO_ACCOUNTS.items():
        if channel.value in known:
            continue
        existing = find_channel_account(engine, channel=channel.value, external_id=external_id)
        if existing is not None and str(existing.tenant_id) != demo["tenant_id"]:
            continue  # this id belongs to an older demo business in the same database
        account_id = (
            existing.id
            if existing
            else connect_channel_account(
                engine,
                tenant_id=uuid.UUID(demo["tenant_id"]),
                channel=channel,
                external_id=external_id,
                app_secret=demo["app_secret"],
                verify_token=demo["verify_token"],
                access_token=secrets.token_urlsafe(24),
                display_name=f"Demo {channel.value}",
            )
        )
        accounts.append(
            {"id": str(account_id), "channel": channel.value, "external_id": external_id, "customer": customer}
        )
