"""Starts and stops the servers a benchmark measures, each in its own process like in production."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

SELLMESH = str(Path(sys.executable).parent / "sellmesh")


def wait_healthy(base_url: str, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base_url} never became healthy")


@contextmanager
def server(args: list[str], *, port: int, env: dict[str, str], log: Path) -> Iterator[str]:
    """Run `args` until the block ends; yields its base URL once /healthz answers."""
    with log.open("wb") as sink:
        process = subprocess.Popen(args, env={**os.environ, **env}, stdout=sink, stderr=sink)
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base_url, process)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
