"""`make bench`: runs every benchmark, prints one table per bench, writes them as JSON under var/bench/.

Each bench measures a baseline in the same run on the same machine (a bare endpoint, a bare model
call, plain inserts), so the ratio survives a noisy or slower machine; absolute numbers do not.
"""

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load import Result, table
from sellmesh.localbroker import LocalBroker
from sellmesh.localredis import LocalRedis

OUT = Path("var/bench")
Rows = list[Result] | list[dict[str, Any]]
Bench = Callable[[dict[str, str], Path], Coroutine[Any, Any, Rows]]


def _benches() -> dict[str, Bench]:
    from bench.agent_bench import agent_overhead
    from bench.ingest_bench import ingest_webhooks
    from bench.mesh_load import mesh_load

    requests = int(os.environ.get("BENCH_REQUESTS", "2000"))
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "16"))
    benches: dict[str, Bench] = {
        "ingest: signed webhooks accepted": lambda env, wd: ingest_webhooks(
            infra_env=env, work_dir=wd, requests=requests, concurrency=concurrency
        ),
        "agent: cost per message": lambda env, wd: agent_overhead(infra_env=env, work_dir=wd, messages=requests // 4),
    }
    # The whole mesh, one process per service, on a broker and Redis of its own (see bench/mesh_load.py).
    benches["mesh: customers end to end vs plain aiokafka and bare litellm"] = lambda env, wd: mesh_load(
        work_dir=wd,
        customers_per_run=max(30, requests // 10),
        rate=float(os.environ.get("BENCH_RATE", "200")),
        scale="ingest",  # the busiest process per message (normalizer and sender, each one message at a time)
        replicas=[1, 2],
        consumers=[4],
    )
    optional = {
        "orders: commands through broker and PostgreSQL": (
            "bench.orders_bench",
            "orders_commands",
            {"commands": requests // 4},
        ),
        "payments: Stripe webhooks reconciled": (
            "bench.payments_bench",
            "payments_webhooks",
            {"events": requests // 4},
        ),
        "ingest: sender against a fake Graph API": ("bench.sender_bench", "sender_sends", {"messages": requests // 2}),
        "subscriber: offset commits per batch vs per interval": (
            "bench.commit_bench",
            "commit_intervals",
            {"records": requests},
        ),
    }
    for title, (module_name, function_name, kwargs) in optional.items():
        try:
            module = __import__(module_name, fromlist=[function_name])
        except ImportError:
            continue
        benches[title] = _optional_bench(getattr(module, function_name), kwargs)
    return benches


def _optional_bench(function: Callable[..., Coroutine[Any, Any, Rows]], kwargs: dict[str, int]) -> Bench:
    def bench(env: dict[str, str], work_dir: Path) -> Coroutine[Any, Any, Rows]:
        return function(infra_env=env, work_dir=work_dir, **kwargs)

    return bench


def _rows(results: list[Result] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [r.row() if isinstance(r, Result) else dict(r) for r in results]
    baseline = float(rows[0].get("per_second") or 0)
    for row in rows:
        row["vs_baseline"] = round(float(row.get("per_second") or 0) / baseline, 3) if baseline else ""
    return rows


def main() -> int:
    work_dir = OUT / "work"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    report: dict[str, Any] = {"at": datetime.now(UTC).isoformat(), "cores": os.cpu_count(), "benches": {}}
    failed = False
    with LocalBroker(log_path=work_dir / "broker.log") as broker, LocalRedis() as redis:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",
            "REDIS_URL": redis.url,
            "SELLMESH_VAR_DIR": str(work_dir),
        }
        for title, bench in _benches().items():
            try:
                rows = _rows(asyncio.run(bench(env, work_dir)))
            except Exception as exc:
                failed = True
                print(f"\n{title}: FAILED ({type(exc).__name__}: {exc})", file=sys.stderr)
                continue
            report["benches"][title] = rows
            print(f"\n{title}")
            print(table(rows))
            failed |= any(int(row.get("errors", 0) or 0) for row in rows)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {OUT / 'results.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
