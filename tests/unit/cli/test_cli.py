"""The `sellmesh` command's admin and guard paths, on a throwaway SQLite database."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sellmesh.cli import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return {"SELLMESH_VAR_DIR": str(tmp_path / "var"), "SELLMESH_LOG_LEVEL": "WARNING"}


def test_tenants_create_prints_the_tenant_and_an_owner_key_once(env: dict[str, str]) -> None:
    first = runner.invoke(app, ["tenants", "create", "Bakery Bob"], env=env)
    second = runner.invoke(app, ["tenants", "create", "Bakery Bob"], env=env)
    assert first.exit_code == 0, first.output
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["name"] == "Bakery Bob"
    assert a["owner_api_key"].startswith("sm_")
    assert a["tenant_id"] != b["tenant_id"]
    assert a["owner_api_key"] not in (Path(env["SELLMESH_VAR_DIR"]) / "sellmesh.db").read_bytes().decode("latin-1")


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_tenants_create_refuses_a_bad_name(env: dict[str, str], name: str) -> None:
    result = runner.invoke(app, ["tenants", "create", name], env=env)
    assert result.exit_code == 2
    assert "1 to 200 characters" in result.output


def test_seed_demo_is_idempotent(env: dict[str, str]) -> None:
    first = json.loads(runner.invoke(app, ["seed-demo"], env=env).stdout)
    second = json.loads(runner.invoke(app, ["seed-demo"], env=env).stdout)
    assert first == second
    assert first["channel_accounts"][0]["channel"] == "whatsapp"
    assert {"tenant_id", "owner_api_key", "app_secret", "verify_token"} <= set(first)


def test_run_refuses_an_unknown_service(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["run", "billing"], env=env)
    assert result.exit_code == 2
    assert "unknown service" in result.output


@pytest.mark.parametrize(
    ("services", "error"),
    [(["orders", "billing"], "unknown service 'billing'"), (["orders", "payments", "orders"], "named twice")],
)
def test_run_refuses_an_unknown_or_repeated_service_among_several(
    env: dict[str, str], services: list[str], error: str
) -> None:
    result = runner.invoke(app, ["run", *services], env=env)
    assert result.exit_code == 2
    assert error in result.output


def test_run_needs_shared_infrastructure(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["run", "agent"], env=env)
    assert result.exit_code == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.output


def test_chat_without_a_demo_business_says_what_to_do(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["chat", "-m", "hi"], env=env)
    assert result.exit_code == 2
    assert "make run" in result.output
