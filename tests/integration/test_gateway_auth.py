"""Keys, roles, rate limits and bad input at the gateway's edge: clear problem documents, nothing written."""

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import Engine
from sqlmodel import Session, select

from schemas.handoff import SetAvailability
from schemas.orders import UpsertProduct
from schemas.topics import HANDOFF_COMMANDS
from sellmesh.db import make_engine, run_migrations
from sellmesh.service import now
from services.gateway.outcomes import Decision, decide
from services.gateway.settings import GatewaySettings
from services.gateway.store import ApiKey
from services.gateway.tables import CommandOutcomeRow
from services.gateway.team import issue_member_key
from tests.integration.gateway_app import Published, Tenant, bearer, gateway_client, seed_tenant
from tests.integration.test_gateway_isolation import tenant_rows

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def migrated_engine(sqlite_url: str) -> Iterator[Engine]:
    """SQLite only: these are HTTP-edge rules; the isolation walk covers both databases."""
    engine = make_engine(sqlite_url)
    run_migrations(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def shop(migrated_engine: Engine) -> Tenant:
    return seed_tenant(migrated_engine)


@pytest_asyncio.fixture
async def client(migrated_engine: Engine, redis: Redis) -> AsyncIterator[tuple[httpx.AsyncClient, Published, Any]]:
    async with gateway_client(migrated_engine, redis, max_body_bytes=4096) as running:
        yield running


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("urn:sellmesh:problem:")
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["instance"] == response.request.url.path
    return body


async def test_staff_is_refused_owner_only_actions_with_403_and_nothing_happens(
    migrated_engine: Engine, shop: Tenant, client: tuple[httpx.AsyncClient, Published, Any]
) -> None:
    http, published, _ = client
    before = tenant_rows(migrated_engine, shop.id)
    owner_only = [
        ("POST", f"/v1/orders/{shop.order_id}/refund", None),
        ("POST", f"/v1/orders/{shop.order_id}/cancel", {"reason": "x"}),
        ("PATCH", "/v1/settings", {"tone": "rude"}),
        ("POST", "/v1/settings/notify-secret", None),
        (
            "POST",
            "/v1/channel-accounts",
            {"channel": "instagram", "external_id": "ig", "app_secret": "a", "verify_token": "v", "access_token": "t"},
        ),
        ("POST", "/v1/team", {"name": "Eve", "role": "owner"}),
        ("DELETE", f"/v1/team/{shop.staff_member_id}", None),
        ("GET", f"/v1/team/{shop.staff_member_id}/keys", None),
        ("POST", f"/v1/team/{shop.staff_member_id}/keys", None),
        ("DELETE", f"/v1/keys/{shop.staff_key_id}", None),
        ("DELETE", f"/v1/products/{shop.sku}", None),
        # Off sale through PUT is the same owner's action as DELETE.
        (
            "PUT",
            f"/v1/products/{shop.sku}",
            {"name": "Mug", "price": {"amount_minor": 900, "currency": "EUR"}, "active": False},
        ),
        ("GET", "/v1/analytics", None),
    ]
    for method, path, body in owner_only:
        response = await http.request(method, path, json=body, headers=bearer(shop.staff_key))
        assert_problem(response, 403)
    assert published.commands == []
    assert tenant_rows(migrated_engine, shop.id) == before
    fulfil = await http.post(f"/v1/orders/{shop.order_id}/fulfil", headers=bearer(shop.staff_key))
    assert fulfil.status_code == 202
    [(_, command, _)] = published.commands
    assert (command.actor.kind.value, command.actor.id) == ("staff", str(shop.staff_member_id))  # type: ignore[attr-defined]


async def test_a_new_key_is_shown_once_stored_hashed_and_stops_working_when_revoked(
    migrated_engine: Engine, shop: Tenant, client: tuple[httpx.AsyncClient, Published, Any]
) -> None:
    http, _, _ = client
    owner = bearer(shop.owner_key)
    member = (await http.post("/v1/team", json={"name": "Kim", "role": "staff"}, headers=owner)).json()
    issued = await http.post(f"/v1/team/{member['id']}/keys", headers=owner)
    assert issued.status_code == 201
    key = issued.json()["api_key"]
    assert key.startswith(f"sm_{issued.json()['prefix']}_")
    me = (await http.get("/v1/me", headers=bearer(key))).json()
    assert (me["role"], me["member_id"]) == ("staff", member["id"])
    listed = await http.get(f"/v1/team/{member['id']}/keys", headers=owner)
    assert [k["prefix"] for k in listed.json()["keys"]] == [issued.json()["prefix"]]
    assert key not in listed.text and key.split("_", 2)[2] not in listed.text
    with Session(migrated_engine) as session:
        row = session.exec(select(ApiKey).where(ApiKey.prefix == issued.json()["prefix"])).one()
        assert key not in repr(row.model_dump()) and key.split("_", 2)[2] not in repr(row.model_dump())

    assert (await http.delete(f"/v1/keys/{issued.json()['id']}", headers=owner)).status_code == 204
    assert_problem(await http.get("/v1/me", headers=bearer(key)), 401)


async def test_removing_a_member_revokes_every_key_of_theirs_at_once(
    shop: Tenant, client: tuple[httpx.AsyncClient, Published, Any]
) -> None:
    http, published, _ = client
    owner = bearer(shop.owner_key)
    member = (await http.post("/v1/team", json={"name": "Lou", "role": "owner"}, headers=owner)).json()
    keys = [(await http.post(f"/v1/team/{member['id']}/keys", headers=owner)).json()["api_key"] for _ in range(2)]
    assert [(await http.get("/v1/me", headers=bearer(k))).status_code for k in keys] == [200, 200]
    assert (await http.delete(f"/v1/team/{member['id']}", headers=owner)).status_code == 204
    for key in keys:
        assert_problem(await http.get("/v1/me", headers=bearer(key)), 401)
    # Handoff hears of it: a removed member is given no new ticket.
    (topic, gone, _) = published.commands[-1]
    assert topic == HANDOFF_COMMANDS and isinstance(gone, SetAvailability)
    assert (gone.staff_id, gone.available) == (member["id"], False)
    assert_problem(await http.delete(f"/v1/team/{member['id']}", headers=owner), 404)


async def test_secrets_never_appear_in_responses_or_logs(
    shop: Tenant, client: tuple[httpx.AsyncClient, Published, Any], caplog: pytest.LogCaptureFixture
) -> None:
    http, _, _ = client
    owner = bearer(shop.owner_key)
    app_secret, access_token = f"app-{uuid.uuid4().hex}", f"EAA{uuid.uuid4().hex}"
    account = {
        "channel": "whatsapp",
        "external_id": str(uuid.uuid4().int)[:15],
        "display_name": "Main line",
        "app_secret": app_secret,
        "verify_token": f"verify-{uuid.uuid4().hex}",
        "access_token": access_token,
    }
    secrets = [app_secret, access_token, account["verify_token"], shop.owner_key, shop.app_secret, shop.access_token]
    with caplog.at_level(logging.DEBUG):
        connected = await http.post("/v1/channel-accounts", json=account, headers=owner)
        assert connected.status_code == 201
        assert_problem(await http.post("/v1/channel-accounts", json=account, headers=owner), 409)
        bad = {**account, "channel": "fax"}
        assert_problem(await http.post("/v1/channel-accounts", json=bad, headers=owner), 422)
        rotated = await http.post("/v1/settings/notify-secret", headers=owner)
        notify_secret = rotated.json()["notify_secret"]
        secrets.append(notify_secret)
        texts = [
            connected.text,
            (await http.get("/v1/channel-accounts", headers=owner)).text,
            (await http.get("/v1/settings", headers=owner)).text,
            (await http.get("/v1/me", headers=owner)).text,
            (await http.get("/v1/team", headers=owner)).text,
        ]
        assert_problem(await http.get("/v1/me", headers=bearer(shop.owner_key + "x")), 401)
    logged = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    assert "gateway request" in logged
    for secret in secrets:
        assert all(secret not in text for text in texts)
        assert secret not in logged
    assert (await http.get("/v1/settings", headers=owner)).json()["notify_secret_set"] is True


@pytest.mark.parametrize(
    "field", ["app_secret", "access_token", "verify_token", "display_name"], ids=lambda f: f"nul-in-{f}"
)
async def test_a_nul_character_or_an_over_long_secret_is_a_422_that_names_no_secret(
    shop: Tenant, client: tuple[httpx.AsyncClient, Published, Any], caplog: pytest.LogCaptureFixture, field: str
) -> None:
    """PostgreSQL cannot keep a NUL and the columns are 256 long: both failed at the insert, as a 500 whose logged
    traceback carried the statement's parameters, tokens included."""
    http, _, _ = client
    owner = bearer(shop.owner_key)
    token = f"EAA{uuid.uuid4().hex}"
    account = {
        "channel": "messenger",
        "external_id": str(uuid.uuid4().int)[:15],
        "app_secret": "s" * 300,
        "verify_token": f"verify-{uuid.uuid4().hex}",
        "access_token": token,
    }
    with caplog.at_level(logging.DEBUG):
        assert_problem(await http.post("/v1/channel-accounts", json=account, headers=owner), 422)
        nul = {**account, "app_secret": "s" * 32, field: "a\x00b"}
        assert_problem(await http.post("/v1/channel-accounts", json=nul, headers=owner), 422)
    logged = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    assert token not in logged
    listed = (await http.get("/v1/channel-accounts", headers=owner)).json()["accounts"]
    assert all(a["external_id"] != account["external_id"] for a in listed)


@pytest.mark.parametrize("body", [b'{"text":"\xff"}', b"[" * 4000], ids=["not-utf8", "nested-too-deep"])
async def test_a_body_that_will_not_parse_is_a_400_problem_not_a_500(
    shop: Tenant, client: tuple[httpx.AsyncClient, Published, Any], body: bytes
) -> None:
    http, published, _ = client
    headers = {**bearer(shop.owner_key), "content-type": "application/json"}
    assert_problem(await http.post("/v1/conversations/conv-1/reply", content=body, headers=headers), 400)
    assert published.commands == []


async def test_a_key_over_its_rate_limit_gets_429_with_retry_after(
    migrated_engine: Engine, redis: Redis, shop: Tenant
) -> None:
    fresh = [issue_member_key(migrated_engine, shop.id, shop.staff_member_id) for _ in range(2)]
    key, other = (issued[1] for issued in fresh if issued is not None)
    async with gateway_client(migrated_engine, redis, rate_limit=3) as (http, _, _):
        statuses = [(await http.get("/v1/me", headers=bearer(key))).status_code for _ in range(3)]
        limited = await http.get("/v1/me", headers=bearer(key))
        other_key = await http.get("/v1/me", headers=bearer(other))
    assert statuses == [200, 200, 200]
    assert_problem(limited, 429)
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert other_key.status_code == 200  # limits are per key


BAD_BODIES = [
    (b'{"tone": "warm"', 400),  # truncated JSON
    (b"\xff\xfe garbage", 400),  # not UTF-8
    (b'{"tone": "' + b"x" * 5000 + b'"}', 413),  # over the body cap
    (b'{"tone": 5}', 422),  # wrong type
    (b'{"faq": "not a list"}', 422),  # wrong shape
    (b'{"handoff": {"timezone": "Mars/Olympus"}}', 422),  # unknown zone
    (b'{"plan": "pro"}', 422),  # the plan is the platform's to set
    (b"[]", 422),
]
BAD_AUTH = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "Bearer sm_",
    "Bearer sm__x",
    "Bearer " + "x" * 500,
    "Bearer sm_abc_def",
    "bearer\tsm_x_y",
    "Token sm_a_b",
]


async def test_bad_bodies_get_a_problem_and_write_nothing(
    migrated_engine: Engine, shop: Tenant, client: tuple[httpx.AsyncClient, Published, Any]
) -> None:
    http, published, _ = client
    before = tenant_rows(migrated_engine, shop.id)
    for content, status in BAD_BODIES:
        headers = {**bearer(shop.owner_key), "content-type": "application/json"}
        body = assert_problem(await http.patch("/v1/settings", content=content, headers=headers), status)
        assert "warm" not in str(body.get("errors", ""))  # the rejected input is not echoed back

    async def stream() -> AsyncIterator[bytes]:
        for part in (b'{"tone": "', b"y" * 5000, b'"}'):
            yield part

    chunked = await http.patch("/v1/settings", content=stream(), headers=headers)
    assert_problem(chunked, 413)  # no content-length: the cap holds while streaming
    assert tenant_rows(migrated_engine, shop.id) == before
    assert published.commands == []


async def test_a_notify_url_aimed_inside_the_network_is_a_422_naming_the_field_and_changes_nothing(
    migrated_engine: Engine, shop: Tenant, client: tuple[httpx.AsyncClient, Published, Any]
) -> None:
    """The handoff worker posts to this URL from inside the cluster: it must not be a way to reach what is there."""
    http, _, _ = client
    owner = bearer(shop.owner_key)
    before = tenant_rows(migrated_engine, shop.id)
    for url in (
        "https://169.254.169.254/latest/meta-data/",
        "https://localhost:6379/",
        "https://[::1]/h",
        "https://10.0.0.5/h",
        "http://hooks.example.com/h",
    ):
        response = await http.patch("/v1/settings", json={"handoff": {"notify_url": url}}, headers=owner)
        body = assert_problem(response, 422)
        assert [error["loc"] for error in body["errors"]] == [["body", "handoff", "notify_url"]], url
    assert tenant_rows(migrated_engine, shop.id) == before
    # Every error of the body at once, the notify URL's among them.
    both = await http.patch(
        "/v1/settings", json={"tone": 5, "handoff": {"notify_url": "https://10.0.0.5/h"}}, headers=owner
    )
    body = assert_problem(both, 422)
    assert sorted(tuple(error["loc"]) for error in body["errors"]) == [
        ("body", "handoff", "notify_url"),
        ("body", "tone"),
    ]
    public = "https://hooks.example.com/sellmesh"
    accepted = await http.patch("/v1/settings", json={"handoff": {"notify_url": public}}, headers=owner)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["handoff"]["notify_url"] == public
    cleared = await http.patch("/v1/settings", json={"handoff": None}, headers=owner)
    assert cleared.json()["handoff"]["notify_url"] is None


async def test_a_deployment_delivering_to_local_receivers_lets_an_owner_set_one(
    migrated_engine: Engine, redis: Redis, shop: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HANDOFF_NOTIFY_ALLOW_LOCAL lets the handoff worker post to local receivers; the API takes what it would."""
    monkeypatch.setenv("HANDOFF_NOTIFY_ALLOW_LOCAL", "true")
    assert GatewaySettings().notify_allow_local
    local = "http://127.0.0.1:8080/hook"
    async with gateway_client(migrated_engine, redis, notify_allow_local=True) as (http, _, _):
        response = await http.patch(
            "/v1/settings", json={"handoff": {"notify_url": local}}, headers=bearer(shop.owner_key)
        )
        assert response.status_code == 200, response.text
        assert response.json()["handoff"]["notify_url"] == local
        refused = await http.patch(
            "/v1/settings", json={"handoff": {"notify_url": "ftp://x/h"}}, headers=bearer(shop.owner_key)
        )
        assert_problem(refused, 422)


@pytest.mark.parametrize("field", ["name", "description", "attribute"])
async def test_a_product_with_a_nul_character_is_refused_at_the_edge_not_dead_lettered_by_orders(
    shop: Tenant, client: tuple[httpx.AsyncClient, Published, Any], field: str
) -> None:
    http, published, _ = client
    product: dict[str, Any] = {"name": "Mug", "price": {"amount_minor": 900, "currency": "EUR"}, "stock": 1}
    if field == "attribute":
        product["attributes"] = {"colour": "bl\x00ue"}
    else:
        product[field] = "Mu\x00g"
    response = await http.put(f"/v1/products/{shop.sku}", json=product, headers=bearer(shop.owner_key))
    assert_problem(response, 422)
    assert published.commands == []


async def test_missing_or_garbled_auth_gets_401_and_publishes_nothing(
    migrated_engine: Engine, shop: Tenant, client: tuple[httpx.AsyncClient, Published, Any]
) -> None:
    http, published, _ = client
    before = tenant_rows(migrated_engine, shop.id)
    product = {"name": "x", "price": {"amount_minor": 1, "currency": "EUR"}, "stock": 1}
    for authorization in BAD_AUTH:
        headers = {} if authorization is None else {"authorization": authorization}
        response = await http.put(f"/v1/products/{shop.sku}", json=product, headers=headers)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    assert published.commands == []
    assert tenant_rows(migrated_engine, shop.id) == before


async def test_unknown_paths_wrong_methods_and_bad_ids_are_problems_with_request_ids(
    shop: Tenant, client: tuple[httpx.AsyncClient, Published, Any]
) -> None:
    http, _, _ = client
    owner = bearer(shop.owner_key)
    assert_problem(await http.get("/v1/nothing-here", headers=owner), 404)
    assert_problem(await http.delete("/v1/me", headers=owner), 405)
    assert_problem(await http.get("/v1/orders/not-a-uuid", headers=owner), 422)
    assert_problem(await http.get("/v1/orders", params={"cursor": "garbage!"}, headers=owner), 400)
    assert_problem(await http.get("/v1/orders", params={"since": "2026-01-01T00:00:00"}, headers=owner), 422)
    given = await http.get("/v1/me", headers={**owner, "x-request-id": "trace-123"})
    assert given.headers["x-request-id"] == "trace-123"
    hostile = await http.get("/v1/me", headers={**owner, "x-request-id": "a b\nc"})
    assert hostile.headers["x-request-id"] != "a b\nc"
    uuid.UUID(hostile.headers["x-request-id"])


async def test_a_command_the_broker_refuses_is_a_503_and_its_outcome_says_so(
    migrated_engine: Engine, shop: Tenant, client: tuple[httpx.AsyncClient, Published, Any]
) -> None:
    http, published, _ = client
    published.broker_down = True
    response = await http.post(f"/v1/orders/{shop.order_id}/fulfil", headers=bearer(shop.owner_key))
    assert_problem(response, 503)
    with Session(migrated_engine) as session:
        row = session.exec(
            select(CommandOutcomeRow).where(
                CommandOutcomeRow.tenant_id == shop.id, CommandOutcomeRow.reason == "not_published"
            )
        ).one()
    outcome = await http.get(f"/v1/commands/{row.command_id}", headers=bearer(shop.owner_key))
    assert (outcome.json()["status"], outcome.json()["reason"]) == ("rejected", "not_published")
    # A publish that timed out may still have reached the broker: if the command's own outcome arrives, it is
    # the truth, and the owner reads that instead of a refusal that never happened.
    applied = Decision(row.command_id, "accepted", "order_changed", None, "")
    assert decide(migrated_engine, shop.id, applied, at=now())
    outcome = await http.get(f"/v1/commands/{row.command_id}", headers=bearer(shop.owner_key))
    assert (outcome.json()["status"], outcome.json()["reason"]) == ("accepted", None)
    # While a settled outcome stays as it was: a redelivered event, or a second verdict, changes nothing.
    assert not decide(migrated_engine, shop.id, Decision(row.command_id, "rejected", "x", "y", ""), at=now())


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/orders/{order}/cancel", {"reason": "a\x00b"}),
        ("/v1/conversations/{conversation}/reply", {"text": "a\x00b"}),
        ("/v1/conversations/{conversation}/resolve", {"note": "a\x00b"}),
    ],
)
async def test_a_nul_character_in_an_action_or_handoff_body_is_a_422_not_a_500(
    shop: Tenant, client: tuple[httpx.AsyncClient, Published, Any], path: str, body: dict[str, str]
) -> None:
    http, published, _ = client
    url = path.format(order=shop.order_id, conversation=shop.conversation_id)
    assert_problem(await http.post(url, json=body, headers=bearer(shop.owner_key)), 422)
    assert published.commands == []


async def test_a_product_put_without_stock_keeps_what_orders_holds_and_with_it_restates_it(
    shop: Tenant, client: tuple[httpx.AsyncClient, Published, Any]
) -> None:
    """An edit of the price or name must not restate a stock figure read before reservations took some units."""
    http, published, _ = client
    owner = bearer(shop.owner_key)
    price = {"amount_minor": 1200, "currency": "EUR"}
    kept = await http.put(f"/v1/products/{shop.sku}", json={"name": "Mug", "price": price}, headers=owner)
    restated = await http.put(
        f"/v1/products/{shop.sku}", json={"name": "Mug", "price": price, "stock": 7}, headers=owner
    )
    assert (kept.status_code, restated.status_code) == (202, 202)
    first, second = [command for _, command, _ in published.commands if isinstance(command, UpsertProduct)]
    assert (first.keep_stock, second.keep_stock, second.stock) == (True, False, 7)
