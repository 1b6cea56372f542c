"""A bounded closed-loop load generator: N requests at concurrency C, latency per request."""

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The value at quantile `q` of `values` (0.0 for none)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@dataclass(frozen=True)
class Result:
    name: str
    requests: int
    seconds: float
    latencies_ms: Sequence[float]
    errors: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def row(self) -> dict[str, float | int | str]:
        return {
            "name": self.name,
            "requests": self.requests,
            "errors": self.errors,
            "per_second": round(self.per_second, 1),
            "p50_ms": round(self.percentile(0.50), 2),
            "p99_ms": round(self.percentile(0.99), 2),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else 0.0,
        }


async def run_load(name: str, calls: Sequence[Callable[[], Awaitable[bool]]], *, concurrency: int) -> Result:
    """Run every call once, `concurrency` at a time; a call returns False (or raises) for an error."""
    queue = list(reversed(calls))
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while queue:
            call = queue.pop()
            started = time.perf_counter()
            try:
                ok = await call()
            except Exception:
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            errors += 0 if ok else 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(name, len(calls), time.perf_counter() - started, latencies, errors)


def table(rows: Sequence[dict[str, float | int | str]]) -> str:
    headers = list(rows[0])
    widths = [max(len(str(h)), *(len(str(r[h])) for r in rows)) for h in headers]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(str(r[h]).ljust(w) for h, w in zip(headers, widths, strict=True)) for r in rows)
    return "\n".join(lines)
