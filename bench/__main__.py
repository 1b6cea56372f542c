"""`make bench`: runs every benchmark, prints one table, writes it as JSON under var/bench/."""

import asyncio
import json
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.ingest_bench import ingest_webhooks
from bench.load import table
from sellmesh.localbroker import LocalBroker
from sellmesh.localredis import LocalRedis

OUT = Path("var/bench")


def main() -> int:
    requests = int(os.environ.get("BENCH_REQUESTS", "2000"))
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "16"))
    work_dir = OUT / "work"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    with LocalBroker(log_path=work_dir / "broker.log") as broker, LocalRedis() as redis:
        infra_env = {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",
            "REDIS_URL": redis.url,
            "SELLMESH_VAR_DIR": str(work_dir),
        }
        results = asyncio.run(ingest_webhooks(infra_env=infra_env, work_dir=work_dir, requests=requests, concurrency=concurrency))
    rows = [r.row() for r in results]
    baseline = results[0].per_second
    for row, result in zip(rows, results, strict=True):
        row["vs_baseline"] = round(result.per_second / baseline, 3) if baseline else 0.0
    print(f"ingest: {requests} signed webhooks at concurrency {concurrency}, 2 cores, client in the same machine")
    print(table(rows))
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"at": datetime.now(UTC).isoformat(), "requests": requests, "concurrency": concurrency, "ingest": rows}
    (OUT / "results.json").write_text(json.dumps(report, indent=2))
    return 0 if all(r.errors == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
