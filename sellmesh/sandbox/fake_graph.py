"""A Graph API stand-in on its own port, for tests and benchmarks: records every send with its arrival
time, answers scripted failures, and can be taken down (every send refused) for a while."""

import asyncio
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sellmesh.localbroker import free_port
from sellmesh.sandbox.threaded_server import ThreadedServer


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    json: Any
    status: int
    # time.monotonic() when the request arrived: benchmarks measure latency to here.
    at: float = 0.0


@dataclass(frozen=True)
class Scripted:
    status: int
    body: dict[str, Any]


def graph_error(status: int, code: int, *, subcode: int | None = None, message: str = "error") -> Scripted:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Afake"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return Scripted(status, {"error": error})


RATE_LIMITED = graph_error(429, 4, message="(#4) Application request limit reached")
SERVER_ERROR = Scripted(500, {"error": {"message": "An unexpected error has occurred", "code": 2}})
WHATSAPP_WINDOW_CLOSED = graph_error(400, 131047, message="Re-engagement message")
MESSENGER_WINDOW_CLOSED = graph_error(
    400, 10, subcode=2018278, message="(#10) This message is sent outside of allowed window."
)


SUCCEED = None  # in a script: answer this request normally


def token_error(token: str) -> Scripted:
    """Meta's invalid-token answer; it quotes the token here, to prove nobody copies it into logs or rows."""
    return graph_error(401, 190, message=f"Invalid OAuth access token - Cannot parse access token {token}")


@dataclass
class FakeGraphApi:
    """Answers `POST /{version}/{account}/messages` like the Graph API: scripted replies first, then success."""

    port: int = field(default_factory=free_port)
    requests: list[Recorded] = field(default_factory=list)
    # Called in the server's thread after each request is recorded (benchmarks wake waiting customers).
    on_arrival: Callable[[Recorded], None] | None = None
    # How long each answer takes, as a slow Graph API would: benchmarks use it to make sends wait.
    latency_seconds: float = 0.0
    _script: deque[Scripted | None] = field(default_factory=deque)
    _down: Scripted | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _served: ThreadedServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Scripted | None) -> None:
        """Answer the next requests with `replies` in order (`SUCCEED` answers one normally), then succeed."""
        with self._lock:
            self._script.extend(replies)

    def take_down(self, reply: Scripted) -> None:
        """Answer every request with `reply` (a 429 or 5xx outage) until `bring_up`."""
        with self._lock:
            self._down = reply

    def bring_up(self) -> None:
        with self._lock:
            self._down = None

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    def to(self, recipient: str) -> list[Recorded]:
        """Requests addressed to `recipient` (WhatsApp `to` or Messenger `recipient.id`)."""
        return [r for r in list(self.requests) if _recipient(r.json) == recipient]

    def accepted(self, recipient: str) -> list[Recorded]:
        return [r for r in self.to(recipient) if r.status == 200]

    async def _send(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        if self.latency_seconds:
            await asyncio.sleep(self.latency_seconds)
        with self._lock:
            scripted = self._down or (self._script.popleft() if self._script else None)
            reply = scripted or Scripted(200, _success(body))
            recorded = Recorded(request.url.path, dict(request.headers), body, reply.status, time.monotonic())
            self.requests.append(recorded)
        if self.on_arrival is not None:
            self.on_arrival(recorded)
        return JSONResponse(reply.body, status_code=reply.status)

    def start(self) -> "FakeGraphApi":
        app = Starlette(routes=[Route("/{version}/{account}/messages", self._send, methods=["POST"])])
        self._served = ThreadedServer(app, port=self.port, name="fake-graph-api")
        self._served.start()
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()


def _recipient(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    if body.get("messaging_product") == "whatsapp":
        return str(body.get("to"))
    return str(body.get("recipient", {}).get("id"))


def _success(body: Any) -> dict[str, Any]:
    if isinstance(body, dict) and body.get("messaging_product") == "whatsapp":
        to = str(body.get("to"))
        return {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": f"wamid.fake{uuid.uuid4().hex}"}],
        }
    return {"recipient_id": _recipient(body), "message_id": f"m_fake{uuid.uuid4().hex}"}
