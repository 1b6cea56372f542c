"""The model's own ceiling: bare `litellm.acompletion` calls to the offline provider, nothing else.

In one process (`bare_litellm`), as the mesh's agent makes them, and in one process per core started together
(`bare_litellm_processes`): a process runs Python on one core at a time, so "what bare litellm calls reach on
these cores" is the second. `python -m bench.bare_litellm --calls N` is one such process: it warms up, prints
`ready`, waits for a line on stdin, makes its calls and prints what it measured as JSON.
"""

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import litellm

from bench.load import Result, run_load
from services.agent import offline_model

TEXTS = ("hello", "how much is the mug?", "I want two espresso beans", "how do I pay?")
START_SECONDS = 120.0  # importing litellm and warming up, per process


async def bare_litellm(calls: int, *, concurrency: int) -> Result:
    """`calls` bare calls to the offline provider, `concurrency` at a time, in this process."""
    await _warm()
    return await _calls(calls, concurrency)


async def _warm() -> None:
    offline_model.register()
    await offline_model.warm_up()


async def _calls(calls: int, concurrency: int) -> Result:
    model = f"{offline_model.PROVIDER}/bench"

    def call(i: int) -> Any:
        async def one() -> bool:
            messages = [{"role": "system", "content": "Shop: Bench."}, {"role": "user", "content": TEXTS[i % 4]}]
            await litellm.acompletion(model=model, messages=messages)
            return True

        return one

    calling = [call(i) for i in range(calls)]
    return await run_load("ceiling: bare litellm calls, one process", calling, concurrency=concurrency)


async def bare_litellm_processes(processes: int, calls: int, *, concurrency: int) -> Result:
    """`calls` bare calls in all, shared by `processes` processes that start calling at the same moment."""
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.bare_litellm",
            "--calls",
            str(calls // processes),
            "--concurrency",
            str(concurrency),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            await asyncio.wait_for(_ready(child), START_SECONDS)
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        reports = []
        for child in children:
            out, _ = await child.communicate()
            if child.returncode != 0:
                raise RuntimeError(f"a bare litellm process failed with {child.returncode}")
            reports.append(json.loads(out.strip().splitlines()[-1]))  # its last line: whatever printed before
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    seconds = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    return Result(
        f"ceiling: bare litellm calls, {processes} processes",
        sum(r["requests"] for r in reports),
        seconds,
        [ms for r in reports for ms in r["latencies_ms"]],
        sum(r["errors"] for r in reports),
    )


async def _ready(child: asyncio.subprocess.Process) -> None:
    assert child.stdout is not None
    while (line := await child.stdout.readline()).strip() != b"ready":
        if not line:
            raise RuntimeError("a bare litellm process ended before it was ready")


async def _one_process(calls: int, concurrency: int) -> None:
    await _warm()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    started = time.time()
    result = await _calls(calls, concurrency)
    report = {
        "started": started,
        "ended": time.time(),
        "requests": result.requests,
        "errors": result.errors,
        "latencies_ms": list(result.latencies_ms),
    }
    print(json.dumps(report), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(_one_process(args.calls, args.concurrency))


if __name__ == "__main__":
    main()
