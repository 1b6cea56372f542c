"""An ASGI app served by uvicorn on 127.0.0.1 in a thread of this process: the fake APIs that tests and benches
run beside the mesh (`fake_graph.FakeGraphApi`, `bench/fake_stripe.FakeStripeApi`)."""

import threading
import time
from typing import Any

import uvicorn


class ThreadedServer:
    def __init__(self, app: Any, *, port: int, name: str) -> None:
        self.name = name
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        """Returns once the port takes connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
