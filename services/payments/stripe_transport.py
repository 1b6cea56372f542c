"""stripe-python's transport over an httpx.AsyncClient the caller owns."""

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

import httpx
import stripe


class HttpxTransport(stripe.HTTPClient):
    """The SDK's own HTTPXClient posts form bodies as httpx's deprecated `data=<str>` (stripe 16.1
    with httpx 0.28), which warns on every call and fails under warnings-as-errors; this sends `content=`.
    """

    name = "sellmesh-httpx"

    def __init__(self, http: httpx.AsyncClient, *, timeout_seconds: float) -> None:
        super().__init__()
        self._http = http
        self._timeout = timeout_seconds

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            response = await self._http.request(
                method, url, headers=dict(headers), content=post_data, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            message = f"could not reach Stripe ({type(exc).__name__})"
            raise stripe.APIConnectionError(message, should_retry=True) from exc  # type: ignore[no-untyped-call]
        return response.content, response.status_code, response.headers

    def sleep_async(self, secs: float) -> Awaitable[None]:
        return asyncio.sleep(secs)

    async def close_async(self) -> None:
        """Nothing to close: the httpx client belongs to whoever passed it in."""
