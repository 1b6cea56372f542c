"""Posts Send API requests to the Graph API and sorts its errors into retry-later and never-again.

Error handling is built on the JSON error envelope (`error.code`, `error.error_subcode`), as
PROTOCOLS A.7 advises; titles are being deprecated, and WhatsApp no longer returns subcodes.
"""

import json
from dataclasses import dataclass, field
from enum import StrEnum

import aiohttp

from schemas.envelope import Channel
from sellmesh.subscriber import DependencyUnavailable
from services.ingest.graph_request import GraphRequest

GRAPH_VERSION = "v25.0"
DETAIL_LIMIT = 300

# App / user / page / custom rate limits, the WABA/app limit, WhatsApp throughput, spam and pair
# limits: all are "back off and try again". [U] 131048 (spam) is a quality problem that a quick
# retry will not cure; the subscriber's bounded retries end in the DLQ, where a person sees it.
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131048, 131056})
OUTSIDE_WINDOW_SUBCODE = 2018278  # with code 10 on Messenger/Instagram
# 551 is "person unavailable" rather than the window, but it too needs the customer to write first.
WINDOW_CODES = frozenset({551, 131047})
# 190 token invalid or expired, 102 session invalid, 10 and the 200 range missing permissions.
TOKEN_CODES = frozenset({190, 102, 10, *range(200, 300)})


class RejectKind(StrEnum):
    TOKEN = "token"  # the account must be reconnected; every send will fail until then
    WINDOW = "window"  # the customer must write again (or WhatsApp needs a template)
    REQUEST = "request"  # this message is wrong (bad recipient, bad template, ...)


class SendUnavailable(DependencyUnavailable):
    """Rate limited, Meta down or unreachable: the subscriber waits it out rather than dead-lettering."""


class SendInDoubt(SendUnavailable):
    """The request left but no answer came back (a read timeout, a dropped connection): Meta may have the message."""


# Failures before the request left: no connection was made (refused, unresolvable, TLS handshake refused) or
# none was free in time (the connect timeout covers waiting for a pooled one). Meta cannot have acted on it.
# Everything else, an error while the request was being written included, may have reached Meta: in doubt.
NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


class SendRejected(Exception):
    """Meta refused the message for good: retrying sends the same refusal."""

    def __init__(self, detail: str, *, kind: RejectKind, code: int | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.code = code


@dataclass(frozen=True)
class SendTarget:
    channel: Channel
    account_external_id: str
    customer_id: str
    # Out of repr, so no log line or traceback that prints a target carries the token.
    access_token: str = field(repr=False)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def classify(status: int, payload: object, *, secret: str = "") -> SendRejected | SendUnavailable:
    """The exception for a non-2xx answer; `secret` is blanked out of any text kept from it."""
    error = payload.get("error") if isinstance(payload, dict) else None
    error = error if isinstance(error, dict) else {}
    code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
    message = str(error.get("message", ""))
    if secret:
        message = message.replace(secret, "***")
    detail = f"graph api answered {status}" + (f" code {code}" if code is not None else "")
    detail += (f"/{subcode}" if subcode is not None else "") + (f": {message}" if message else "")
    detail = detail[:DETAIL_LIMIT]
    if status == 429 or code in RATE_LIMIT_CODES:
        return SendUnavailable(detail)
    if (code == 10 and subcode == OUTSIDE_WINDOW_SUBCODE) or code in WINDOW_CODES:
        return SendRejected(detail, kind=RejectKind.WINDOW, code=code)
    if code in TOKEN_CODES:
        return SendRejected(detail, kind=RejectKind.TOKEN, code=code)
    if status >= 500:
        return SendUnavailable(detail)
    return SendRejected(detail, kind=RejectKind.REQUEST, code=code)


def send_url(base_url: str, target: SendTarget) -> str:
    if target.channel is Channel.WHATSAPP:
        return f"{base_url}/{GRAPH_VERSION}/{target.account_external_id}/messages"
    # With a Page token `/me` is the Page, for Messenger and for Instagram accounts linked to it.
    # [U] Instagram accounts on Instagram Login use graph.instagram.com instead: not supported yet.
    return f"{base_url}/{GRAPH_VERSION}/me/messages"


class GraphClient:
    """The Send API over one pooled aiohttp session, opened on first use (inside the running loop).

    aiohttp rather than httpx: a local post cost 0.11 ms of client CPU against 1.0-1.2 ms for httpx (its
    pure-Python HTTP/1.1 parser and pool), once or twice for every reply the mesh sends. aiohttp never
    retries a POST on its own (only idempotent methods) and redirects are not followed, so a request goes out
    once per `post`.
    """

    def __init__(
        self, base_url: str, *, timeout_seconds: float = 10.0, connect_seconds: float = 5.0, connections: int = 100
    ) -> None:
        self.base_url = base_url
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds, connect=connect_seconds)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._connections),
                # Cookies a Graph answer sets must not ride along on another tenant's request.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def post(self, target: SendTarget, request: GraphRequest) -> str | None:
        """Send one request; returns the provider's message id (None if a 2xx answer lacked one)."""
        if self._closed:
            # Nothing left: the send is retried (its claim released) rather than dead-lettered.
            raise SendUnavailable("graph client is closed (the service is stopping)")
        headers = {"Authorization": f"Bearer {target.access_token}"}
        url = send_url(self.base_url, target)
        try:
            # No redirects: following a 307/308 would post the message a second time.
            async with self._open().post(url, json=request.body, headers=headers, allow_redirects=False) as answer:
                status, raw = answer.status, await answer.read()
        except NOT_SENT as exc:
            raise SendUnavailable(f"graph api unreachable: {type(exc).__name__}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendInDoubt(f"graph api gave no answer: {type(exc).__name__}") from exc
        try:
            data: object = json.loads(raw)
        except ValueError:
            data = None
        if not 200 <= status < 300:  # a redirect is not an acceptance either
            raise classify(status, data, secret=target.access_token)
        # A 2xx only means accepted (WhatsApp reports delivery failures later, as a `failed` status).
        return _message_id(target.channel, data)

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()


def _message_id(channel: Channel, data: object) -> str | None:
    if not isinstance(data, dict):
        return None
    if channel is Channel.WHATSAPP:
        messages = data.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else None
        value = first.get("id") if isinstance(first, dict) else None
    else:
        value = data.get("message_id")
    return str(value) if value else None
