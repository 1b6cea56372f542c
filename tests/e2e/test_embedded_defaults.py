"""`sellmesh up --demo` on embedded defaults (own broker, private Redis, SQLite), driven by `sellmesh chat`."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sellmesh.localbroker import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SELLMESH = str(Path(sys.executable).parent / "sellmesh")
INFRA_VARIABLES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_ENABLE_IDEMPOTENCE",
    "DATABASE_URL",
    "REDIS_URL",
    "META_GRAPH_BASE_URL",
    "STRIPE_API_BASE",
)


@pytest.fixture(scope="module")
def embedded_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    var_dir = tmp_path_factory.mktemp("var")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in INFRA_VARIABLES}
    env.update(SELLMESH_VAR_DIR=str(var_dir), SELLMESH_HTTP_PORT=str(port))
    log = (var_dir / "up.log").open("wb")
    process = subprocess.Popen([SELLMESH, "up", "--demo"], env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        demo = _read_demo(process)
        _wait_healthy(base_url)
        yield base_url, env, demo
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    assert process.returncode == 0, (var_dir / "up.log").read_text()[-3000:]


def _read_demo(process: subprocess.Popen[str]) -> dict[str, str]:
    """`up --demo` prints the seeded business as one JSON document on stdout."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"sellmesh up exited with {process.poll()}")
        lines.append(line)
        if line.rstrip() == "}":
            document: dict[str, dict[str, str]] = json.loads("".join(lines))
            return document["demo"]
    raise AssertionError("no demo document printed")


def _wait_healthy(base_url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("mesh never became healthy")


def test_demo_business_is_seeded_with_keys_and_a_whatsapp_account(
    embedded_mesh: tuple[str, dict[str, str], dict[str, str]],
) -> None:
    base_url, _, demo = embedded_mesh
    assert demo["owner_api_key"].startswith("sm_")
    me = httpx.get(f"{base_url}/v1/me", headers={"authorization": f"Bearer {demo['owner_api_key']}"}).json()
    assert me["tenant_name"] == "Demo Coffee Roasters"
    assert httpx.get(f"{base_url}/v1/me", headers={"authorization": "Bearer sm_nope_nope"}).status_code == 401


def test_chat_gets_replies_through_the_real_path_within_seconds(
    embedded_mesh: tuple[str, dict[str, str], dict[str, str]],
) -> None:
    base_url, env, _ = embedded_mesh
    started = time.monotonic()
    result = subprocess.run(
        [SELLMESH, "chat", "--url", base_url, "-m", "hello", "-m", "I want two espresso beans", "-m", "how do I pay?"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    shop_lines = [line for line in result.stdout.splitlines() if line.startswith("shop> ")]
    assert "Welcome to Demo Coffee Roasters" in shop_lines[0]
    assert any("asked to add 2 × Espresso beans 250g" in line for line in shop_lines)
    assert any("/sandbox/stripe/pay/" in line for line in shop_lines)
    assert "(no reply yet)" not in result.stdout
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("channel", ["messenger", "instagram"])
def test_chat_works_on_messenger_and_instagram_too(
    embedded_mesh: tuple[str, dict[str, str], dict[str, str]], channel: str
) -> None:
    base_url, env, _ = embedded_mesh
    result = subprocess.run(
        [SELLMESH, "chat", "--url", base_url, "--channel", channel, "-m", "hello", "-m", "how much is the mug?"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    shop_lines = [line for line in result.stdout.splitlines() if line.startswith("shop> ")]
    assert "Welcome to Demo Coffee Roasters" in shop_lines[0]
    assert "9.00 EUR" in shop_lines[-1]
