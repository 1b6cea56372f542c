"""The `sellmesh` command: run the mesh or one service, administer tenants, seed and talk to the demo."""

import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import httpx
import typer

from schemas.envelope import Channel
from sellmesh import event_loop
from sellmesh.logging import configure_logging
from sellmesh.ops.cli import dlq_app, groups_app, replay_app
from sellmesh.settings import MeshSettings

app = typer.Typer(help="sellmesh: AI-assisted selling in chat, as an event-driven mesh.", no_args_is_help=True)
tenants = typer.Typer(help="Platform admin: tenants.")
app.add_typer(tenants, name="tenants")
app.add_typer(replay_app, name="replay")
app.add_typer(dlq_app, name="dlq")
app.add_typer(groups_app, name="groups")


def _settings() -> MeshSettings:
    settings = MeshSettings()
    configure_logging(settings.sellmesh_log_level)
    return settings


def _migrated_engine(settings: MeshSettings):  # type: ignore[no-untyped-def]
    from sellmesh.db import make_engine, run_migrations

    settings.sellmesh_var_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    run_migrations(engine)
    return engine


# Young-generation passes while a service starts: rare enough that what start-up builds is not walked again
# and again, yet a start-up that hangs (a broker that does not answer) still collects its garbage.
START_UP_YOUNG_THRESHOLD = 200_000


def hold_collector() -> None:
    """Start-up imports and builds hundreds of thousands of objects that live as long as the process (litellm's
    tables above all); collecting while they are made only walks them again and again, a fifth to a quarter of a
    service's start-up CPU. The collector all but waits until they are built and frozen (`settle_collector`)."""
    _, *older = gc.get_threshold()
    gc.set_threshold(START_UP_YOUNG_THRESHOLD, *older)


def settle_collector(*, young: int) -> None:
    """What start-up made lives as long as the process: one collection, then out of the collector's reach, so
    no later pass (nor the exit after SIGTERM) walks litellm's large object graph again.

    Python collects its young generation every 700 allocations; nearly everything is freed by reference
    counting before that, so `young` (SELLMESH_GC_YOUNG_THRESHOLD) makes the passes rarer: under load they
    took 0.6 of about 35 s of the mesh's CPU in a bench run at 700, 0.1 s at 10,000 (gc.callbacks). The older
    generations keep their ratios."""
    gc.collect()
    gc.freeze()
    _, *older = gc.get_threshold()
    gc.set_threshold(young, *older)


async def _serve(settings: MeshSettings, services: list[str], *, demo: bool) -> None:
    from sellmesh.mesh import Mesh

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    young = settings.sellmesh_gc_young_threshold
    async with Mesh(settings, services, on_built=lambda: settle_collector(young=young)) as mesh:
        if demo and mesh.ctx is not None:
            from sellmesh.demo import seed_demo

            info = await asyncio.to_thread(seed_demo, mesh.ctx.engine, var_dir=settings.sellmesh_var_dir)
            typer.echo(json.dumps({"demo": info, "url": settings.public_base_url}, indent=2))
        typer.echo(
            f"sellmesh is up on {settings.public_base_url} (services: {', '.join(services)}). Ctrl-C stops it.",
            err=True,
        )
        await stop.wait()


@app.command()
def up(
    port: Annotated[int | None, typer.Option(help="HTTP port for webhooks, gateway and sandboxes")] = None,
    demo: Annotated[bool, typer.Option(help="Seed the demo business and print it")] = False,
) -> None:
    """Run every service in one process on one HTTP port, on embedded defaults unless configured."""
    hold_collector()
    from sellmesh.mesh import SERVICE_NAMES

    if port is not None:
        os.environ["SELLMESH_HTTP_PORT"] = str(port)
    settings = _settings()
    event_loop.run(_serve(settings, list(SERVICE_NAMES), demo=demo), loop=settings.sellmesh_event_loop)


@app.command()
def run(
    services: Annotated[
        list[str], typer.Argument(help="ingest, agent, orders, payments, handoff or gateway; several share a process")
    ],
) -> None:
    """Run a service alone, or several in one process; copies share each service's consumer groups and split
    their partitions."""
    hold_collector()
    from sellmesh.mesh import SERVICE_NAMES

    settings = _settings()
    unknown = [service for service in services if service not in SERVICE_NAMES]
    if unknown:
        typer.echo(f"unknown service {unknown[0]!r}; choose from {', '.join(SERVICE_NAMES)}", err=True)
        raise typer.Exit(2)
    if len(set(services)) != len(services):
        typer.echo(f"a service is named twice in {' '.join(services)}: one process runs each service once", err=True)
        raise typer.Exit(2)
    if settings.kafka_bootstrap_servers is None or settings.redis_url is None:
        typer.echo(
            "`sellmesh run` needs KAFKA_BOOTSTRAP_SERVERS and REDIS_URL shared by all processes; "
            "`sellmesh infra` starts local ones.",
            err=True,
        )
        raise typer.Exit(2)
    event_loop.run(_serve(settings, services, demo=False), loop=settings.sellmesh_event_loop)


@app.command()
def infra() -> None:
    """Start a local broker and Redis for multi-process runs and print the variables to export."""
    from sellmesh.localbroker import BROKER_STATE_FILE, LocalBroker
    from sellmesh.localredis import LocalRedis

    settings = _settings()
    settings.sellmesh_var_dir.mkdir(parents=True, exist_ok=True)
    state_path = settings.sellmesh_var_dir / BROKER_STATE_FILE
    # The state file lets `sellmesh replay|dlq|groups` find this broker without exported variables.
    with (
        LocalBroker(log_path=settings.sellmesh_var_dir / "broker.log", state_path=state_path) as broker,
        LocalRedis() as redis,
    ):
        typer.echo(
            f"export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}\n"
            "export KAFKA_ENABLE_IDEMPOTENCE=false\n"
            f"export REDIS_URL={redis.url}"
        )
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


@app.command()
def topics(
    replication_factor: Annotated[int, typer.Option(help="Copies of each partition (1 on a one-broker cluster)")] = 3,
) -> None:
    """Create every topic and its dead-letter topic with the partitions and retention in sellmesh/topology.py."""
    from dataclasses import asdict

    from sellmesh.topic_admin import ensure_topics

    settings = _settings()
    if settings.kafka_bootstrap_servers is None:
        typer.echo("`sellmesh topics` needs KAFKA_BOOTSTRAP_SERVERS", err=True)
        raise typer.Exit(2)
    report = asyncio.run(ensure_topics(settings.kafka_bootstrap_servers, replication_factor=replication_factor))
    typer.echo(json.dumps(asdict(report), indent=2))
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def migrate() -> None:
    """Bring the database (DATABASE_URL, or the SQLite file under var/) to the latest schema."""
    _migrated_engine(_settings())
    typer.echo("database is at the latest schema", err=True)


@tenants.command("create")
def tenants_create(name: Annotated[str, typer.Argument(help="The business's name")]) -> None:
    """Create a tenant; prints its id and an owner API key (shown once)."""
    from services.gateway.admin import create_tenant

    name = name.strip()
    if not name or len(name) > 200:
        typer.echo("a tenant name is 1 to 200 characters", err=True)
        raise typer.Exit(2)
    tenant_id, key = create_tenant(_migrated_engine(_settings()), name=name)
    typer.echo(json.dumps({"tenant_id": str(tenant_id), "name": name, "owner_api_key": key}))


@app.command("seed-demo")
def seed_demo_command() -> None:
    """Create the demo business (catalog, WhatsApp account) and print what was made."""
    from sellmesh.demo import seed_demo

    settings = _settings()
    typer.echo(json.dumps(seed_demo(_migrated_engine(settings), var_dir=settings.sellmesh_var_dir), indent=2))


@app.command()
def chat(
    url: Annotated[str | None, typer.Option(help="Base URL of a running `sellmesh up`")] = None,
    channel: Annotated[Channel, typer.Option(help="Which demo account to write to")] = Channel.WHATSAPP,
    message: Annotated[list[str] | None, typer.Option("--message", "-m", help="Send these and exit")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each reply")] = 15.0,
) -> None:
    """Play the demo customer: each line goes in as a signed webhook; replies come back from the sandbox."""
    from sellmesh.chat import demo_account, replies, send_as_customer, wait_for_replies

    settings = _settings()
    demo_file = Path(settings.sellmesh_var_dir) / "demo.json"
    if not demo_file.exists():
        typer.echo("no demo business yet: start `make run` (or `sellmesh up --demo`) first", err=True)
        raise typer.Exit(2)
    demo = json.loads(demo_file.read_text())
    try:
        account = demo_account(demo, channel.value)
    except LookupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    base_url = url or settings.public_base_url
    lines = list(message or [])
    interactive = not lines
    with httpx.Client(timeout=10) as client:
        while interactive or lines:
            line = _next_line(lines, interactive)
            if line is None:
                return
            if not line:
                continue
            before = len(replies(client, base_url=base_url, customer=account["customer"]))
            send_as_customer(client, base_url=base_url, app_secret=demo["app_secret"], account=account, text=line)
            if not interactive:
                typer.echo(f"you> {line}")
            got = wait_for_replies(
                client, base_url=base_url, customer=account["customer"], after=before, timeout=timeout
            )
            for reply in got or [{"text": "(no reply yet)"}]:
                typer.echo(f"shop> {reply['text']}")


def _next_line(lines: list[str], interactive: bool) -> str | None:
    if not interactive:
        return lines.pop(0)
    try:
        return input("you> ").strip()
    except EOFError:
        return None
