"""Where the notification client may connect: public addresses only, checked on the addresses it connects to."""

from collections.abc import Iterable

import httpcore
import pytest

from services.handoff.delivery import DestinationRefused, PublicOnlyBackend, notification_client
from services.handoff.notification import address_refusal

PUBLIC = "93.184.215.14"
OK = [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]


class Dns:
    """Names a test makes up, answered from a table; the real resolver is never asked."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(-2, "Name or service not known")
        return self.table[host]


class Sockets(httpcore.AsyncNetworkBackend):
    """Records every connection asked of it; answers from `replies`, refuses the addresses in `down`."""

    def __init__(self, replies: list[bytes] | None = None, down: Iterable[str] = ()) -> None:
        self.opened: list[tuple[str, int]] = []
        self.replies = replies or OK
        self.down = set(down)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.opened.append((host, port))
        if host in self.down:
            raise httpcore.ConnectError("connection refused")
        return await httpcore.AsyncMockBackend(list(self.replies)).connect_tcp(host, port)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),
        # IPv4 carried in IPv6 is judged as the IPv4 address it reaches: NAT64 (well-known and local-use), SIIT,
        # IPv4-compatible, 6to4 and Teredo's client.
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("64:ff9b:1::a00:1", "reserved"),  # local-use NAT64: where it leads cannot be told, so never public
        ("64:ff9b:1:a9fe:a9:fe00:808:808", "reserved"),
        ("::ffff:0:7f00:1", "loopback"),
        ("::a00:1", "private"),
        ("2002:a9fe:a9fe::1", "link-local"),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),
    ],
)
def test_every_address_that_is_not_public_is_refused_and_named(address: str, kind: str) -> None:
    refusal = address_refusal(address)
    assert refusal is not None and refusal.startswith(f"{kind} address ")


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(address) is None


async def test_a_name_that_resolves_to_the_metadata_service_is_refused_before_any_connection() -> None:
    sockets = Sockets()
    backend = PublicOnlyBackend(allow_local=False, resolve=Dns({"hooks.example": ["169.254.169.254"]}), inner=sockets)
    with pytest.raises(DestinationRefused, match=r"link-local address 169\.254\.169\.254"):
        await backend.connect_tcp("hooks.example", 443)
    assert sockets.opened == []


async def test_a_name_with_one_public_and_one_private_address_is_refused() -> None:
    sockets = Sockets()
    dns = Dns({"hooks.example": [PUBLIC, "10.0.0.7"]})
    with pytest.raises(DestinationRefused, match=r"private address 10\.0\.0\.7"):
        await PublicOnlyBackend(allow_local=False, resolve=dns, inner=sockets).connect_tcp("hooks.example", 443)
    assert sockets.opened == []


async def test_the_connection_goes_to_the_address_checked_not_to_the_name() -> None:
    """The name is never handed to the socket layer, so a second lookup cannot answer differently."""
    sockets = Sockets(down=["2001:4860:4860::8888"])
    dns = Dns({"hooks.example": ["2001:4860:4860::8888", PUBLIC]})
    await PublicOnlyBackend(allow_local=False, resolve=dns, inner=sockets).connect_tcp("hooks.example", 443)
    assert sockets.opened == [("2001:4860:4860::8888", 443), (PUBLIC, 443)]
    assert dns.asked == ["hooks.example"]


async def test_a_name_that_does_not_resolve_is_a_connect_error_to_retry() -> None:
    with pytest.raises(httpcore.ConnectError, match="did not resolve"):
        await PublicOnlyBackend(allow_local=False, resolve=Dns({}), inner=Sockets()).connect_tcp("gone.example", 443)


async def test_allowing_local_receivers_connects_to_the_host_as_given() -> None:
    sockets = Sockets()
    dns = Dns({})
    await PublicOnlyBackend(allow_local=True, resolve=dns, inner=sockets).connect_tcp("localhost", 8080)
    assert sockets.opened == [("localhost", 8080)] and dns.asked == []


async def test_the_client_connects_only_through_the_check() -> None:
    """httpx takes the check through its connection pool: a request to a refused name fails in the client."""
    sockets = Sockets()
    dns = Dns({"metadata.example": ["169.254.169.254"], "hooks.example": [PUBLIC]})
    async with notification_client(PublicOnlyBackend(allow_local=False, resolve=dns, inner=sockets)) as client:
        with pytest.raises(DestinationRefused):
            await client.post("http://metadata.example/latest/meta-data/", content=b"{}")
        response = await client.post("http://hooks.example:8443/h", content=b"{}")
    assert response.status_code == 200
    assert sockets.opened == [(PUBLIC, 8443)]


async def test_the_client_does_not_follow_a_redirect() -> None:
    moved = [b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n"]
    sockets = Sockets(replies=moved)
    dns = Dns({"hooks.example": [PUBLIC]})
    async with notification_client(PublicOnlyBackend(allow_local=False, resolve=dns, inner=sockets)) as client:
        response = await client.post("http://hooks.example/h", content=b"{}")
    assert response.status_code == 302
    assert sockets.opened == [(PUBLIC, 80)]
