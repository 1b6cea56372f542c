"""The demo business `make run` seeds: a coffee roaster with a small catalog and a WhatsApp number."""

import json
import secrets
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from schemas.envelope import Channel
from sellmesh.db import session_scope
from services.gateway.admin import connect_channel_account, create_tenant
from services.gateway.query import tenant_name
from services.orders.store import upsert_product

DEMO_PHONE_NUMBER_ID = "100000000000001"
DEMO_CUSTOMER = "15551234567"
CATALOG = (
    ("ESP-250", "Espresso beans 250g", "Dark roast, chocolate and hazelnut notes", 1250, 40),
    ("FIL-1KG", "Filter coffee 1kg", "Light roast from Ethiopia, floral and citrus", 2900, 10),
    ("MUG-01", "Ceramic mug", "Handmade stoneware mug, 300 ml", 900, 25),
    ("GRN-01", "Hand grinder", "Steel burr hand grinder for espresso and filter", 4500, 5),
)


def seed_demo(engine: Engine, *, var_dir: Path) -> dict[str, Any]:
    """Create the demo business once; later calls return what was made (kept in var/demo.json)."""
    saved = var_dir / "demo.json"
    if saved.exists():
        demo: dict[str, Any] = json.loads(saved.read_text())
        if tenant_name(engine, uuid.UUID(demo["tenant_id"])) is not None:
            return demo
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
    app_secret, verify_token = secrets.token_hex(16), secrets.token_urlsafe(12)
    account_id = connect_channel_account(
        engine,
        tenant_id=tenant_id,
        channel=Channel.WHATSAPP,
        external_id=DEMO_PHONE_NUMBER_ID,
        app_secret=app_secret,
        verify_token=verify_token,
        access_token=secrets.token_urlsafe(24),
        display_name="Demo WhatsApp",
    )
    demo = {
        "tenant_id": str(tenant_id),
        "owner_api_key": owner_key,
        "channel_accounts": [{"id": str(account_id), "channel": "whatsapp", "phone_number_id": DEMO_PHONE_NUMBER_ID}],
        "app_secret": app_secret,
        "verify_token": verify_token,
        "demo_customer": DEMO_CUSTOMER,
    }
    var_dir.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(demo, indent=2))
    saved.chmod(0o600)
    return demo
