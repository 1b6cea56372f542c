"""The mesh as separate `sellmesh run SERVICE` processes, several replicas per service, each killable and restartable.

Replicas of one service share its consumer groups and split the partitions, as in production. Every replica
gets its own HTTP port; `url(service)` picks a live one, so a load generator keeps going while one is down.
"""

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.processes import SELLMESH
from sellmesh.localbroker import free_port


def mesh_env(infra_env: Mapping[str, str], *, database_url: str, graph_url: str, work_dir: Path) -> dict[str, str]:
    return {
        **infra_env,
        "DATABASE_URL": database_url,
        "META_GRAPH_BASE_URL": graph_url,
        "SELLMESH_VAR_DIR": str(work_dir),
        "SELLMESH_LOG_LEVEL": "WARNING",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        # The quiet period waits for a customer's next fragment on purpose: a product choice, not overhead.
        "AGENT_QUIET_SECONDS": "0",
        "STRIPE_SANDBOX_SEND_WEBHOOKS": "false",  # the load generator delivers Stripe's webhooks itself
        "PAYMENTS_SWEEP_INTERVAL_SECONDS": "3600",
        "SELLMESH_SEND_RATE_PER_SECOND": "100000",
        "SELLMESH_SEND_BURST": "100000",
    }


def label(service: str) -> str:
    """How a process of one or several services ("orders payments handoff") is named in logs and tables."""
    return service.replace(" ", "+")


@dataclass
class Replica:
    service: str  # one service, or several sharing the process ("orders payments handoff")
    index: int
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def name(self) -> str:
        return f"{label(self.service)}-{self.index}"

    @property
    def services(self) -> list[str]:
        return self.service.split()


@dataclass
class MeshProcesses:
    """`replicas` maps a service to how many copies run; `env` is shared (broker, Redis, database, fakes)."""

    env: Mapping[str, str]
    work_dir: Path
    replicas: Mapping[str, int]
    all: list[Replica] = field(default_factory=list)
    _turn: "itertools.count[int]" = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        for service, count in self.replicas.items():
            for index in range(count):
                log = self.work_dir / f"{label(service)}-{index}.log"
                self.all.append(Replica(service, index, free_port(), log))

    def start(self, timeout: float = 180.0) -> None:
        """Start every replica at once (each pays its imports and group joins in parallel), then wait for all."""
        for replica in self.all:
            self._spawn(replica)
        for replica in self.all:
            self._wait_healthy(replica, timeout)

    def _spawn(self, replica: Replica) -> None:
        env = {**os.environ, **self.env, "SELLMESH_HTTP_PORT": str(replica.port)}
        with replica.log.open("ab") as sink:
            command = [SELLMESH, "run", *replica.services]
            replica.process = subprocess.Popen(command, env=env, stdout=sink, stderr=sink)
        replica.starts += 1

    def _wait_healthy(self, replica: Replica, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if replica.process is None or replica.process.poll() is not None:
                tail = replica.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{replica.name} exited during start-up:\n{tail}")
            try:
                if self._ready(replica):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{replica.name} was not healthy within {timeout}s")

    @staticmethod
    def _ready(replica: Replica) -> bool:
        """Ready once every consumer has its group assignment (/readyz), else alive where there is no /readyz."""
        ready = httpx.get(f"{replica.url}/readyz", timeout=1)
        if ready.status_code == 404:
            return httpx.get(f"{replica.url}/healthz", timeout=1).status_code == 200
        return ready.status_code == 200

    def of(self, service: str) -> list[Replica]:
        return [r for r in self.all if service in r.services]

    def url(self, service: str) -> str:
        """A live replica of `service`, round-robin; a dead one's URL when none is alive (the caller retries)."""
        replicas = self.of(service)
        live = [r for r in replicas if r.alive] or replicas
        return live[next(self._turn) % len(live)].url

    def kill(self, replica: Replica) -> None:
        """kill -9: no shutdown hooks, no offset commits, no flushing; what a crashed host looks like."""
        if replica.process is not None and replica.process.poll() is None:
            replica.process.send_signal(signal.SIGKILL)
            replica.process.wait()

    def restart(self, replica: Replica, timeout: float = 120.0, *, tries: int = 3) -> None:
        """Kill and start again; a start that dies (its database cut mid-migration) is retried, like a supervisor."""
        self.kill(replica)
        for attempt in range(1, tries + 1):
            self._spawn(replica)
            try:
                self._wait_healthy(replica, timeout)
                return
            except RuntimeError:
                if attempt == tries:
                    raise
                time.sleep(1.0)

    def stop(self) -> None:
        for replica in self.all:
            if replica.process is not None and replica.process.poll() is None:
                replica.process.terminate()
        for replica in self.all:
            if replica.process is None:
                continue
            try:
                replica.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()
