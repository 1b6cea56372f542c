"""Shared request-body base and the bodies of the account, settings, team and channel-account routes."""

import ipaddress
import socket
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from schemas.envelope import NO_NUL, Channel
from sellmesh.addresses import is_public, judged
from services.gateway.deployment import NOTIFY_ALLOW_LOCAL


class Body(BaseModel):
    """Requests: unknown fields are an error, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid")


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL)]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=NO_NUL)]
Url = Annotated[str, StringConstraints(pattern=r"^https?://\S{1,2040}$")]
Clock = Annotated[str, StringConstraints(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


TimeZone = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_known_zone)]


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names by itself, in any spelling a resolver takes (`127.1`, `0x7f.1`, `2130706433`)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return judged(address)


def refuse_inside(value: str, *, allow_local: bool) -> None:
    """Raise ValueError when the handoff worker must not post to this URL from inside the cluster.

    Only what the URL says by itself is checked here; a DNS name is resolved and checked when a
    notification is sent (services/handoff/delivery.py), since it may point anywhere by then. With
    `allow_local` (HANDOFF_NOTIFY_ALLOW_LOCAL, a developer's machine) the worker delivers anywhere, so
    nothing is refused here either.
    """
    if allow_local:
        return
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError("not a URL") from exc
    if url.scheme != "https":
        raise ValueError("must be an https URL")
    host = url.host.rstrip(".").lower()
    if not host:
        raise ValueError("must name a host")
    if "%" in host:
        # No DNS name has one; decoded by some resolver, `%31%32%37.0.0.1` would be 127.0.0.1.
        raise ValueError("must not percent-encode its host")
    if host == "localhost" or host.endswith(".localhost"):
        raise ValueError("must not name localhost")
    address = _literal_address(host)
    if address is not None and not is_public(address):
        raise ValueError("must not name a loopback, private, link-local, multicast or reserved address")


def _deliverable(value: str) -> str:
    refuse_inside(value, allow_local=NOTIFY_ALLOW_LOCAL.get())
    return value


# http is in the pattern for deployments with HANDOFF_NOTIFY_ALLOW_LOCAL; elsewhere `refuse_inside` refuses it.
NotifyUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S{1,2040}$"), AfterValidator(_deliverable)]


class Accepted(BaseModel):
    command_id: UUID
    status: Literal["pending"] = "pending"


class Me(BaseModel):
    tenant_id: UUID
    tenant_name: str | None
    role: str
    member_id: UUID | None
    key_id: UUID


class FaqEntry(Body):
    q: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    a: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class HandoffSettings(Body):
    first_response_seconds: int = Field(900, ge=1, le=30 * 24 * 3600)
    business_hours: dict[Day, Annotated[list[Clock], Field(min_length=2, max_length=2)]] = Field(
        default_factory=dict, description='Open days only, e.g. {"mon": ["09:00", "17:00"]}; empty: always open'
    )
    timezone: TimeZone = "UTC"
    quiet_return_seconds: int = Field(3600, ge=1, le=30 * 24 * 3600)
    on_quiet: Literal["ai", "human"] = "ai"
    notify_url: Url | None = None


class HandoffSettingsIn(HandoffSettings):
    """The handoff settings an owner sends. Its notify_url is held to more than the shown one (https to a public
    host, unless the deployment sets HANDOFF_NOTIFY_ALLOW_LOCAL), so a stored URL that would be refused now still
    shows in GET /v1/settings."""

    notify_url: NotifyUrl | None = Field(
        None,
        description="https only, to a public host: not localhost, nor a loopback, private or link-local address"
        " (unless the deployment sets HANDOFF_NOTIFY_ALLOW_LOCAL)",
    )


Policies = Annotated[
    dict[
        Annotated[str, StringConstraints(min_length=1, max_length=64)],
        Annotated[str, StringConstraints(max_length=2000)],
    ],
    Field(max_length=50),
]
Topics = Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=200)]], Field(max_length=50)]
StripeAccount = Annotated[str, StringConstraints(pattern=r"^acct_[A-Za-z0-9]{1,250}$")]


class SettingsPatch(Body):
    """Only the fields sent change; null clears one."""

    tone: Annotated[str, StringConstraints(max_length=200)] | None = None
    language: Annotated[str, StringConstraints(max_length=64)] | None = None
    faq: Annotated[list[FaqEntry], Field(max_length=100)] | None = None
    policies: Policies | None = None
    refused_topics: Topics | None = None
    stripe_account: StripeAccount | None = None
    success_url: Url | None = None
    cancel_url: Url | None = None
    handoff: HandoffSettingsIn | None = None


class Settings(BaseModel):
    tone: str | None
    language: str | None
    faq: list[FaqEntry]
    policies: dict[str, str]
    refused_topics: list[str]
    plan: str = Field(description="Set by the platform, not through this API")
    stripe_account: str | None
    success_url: str | None
    cancel_url: str | None
    handoff: HandoffSettings
    notify_secret_set: bool


class NotifySecret(BaseModel):
    notify_secret: str = Field(description="Shown once: store it now")


class Usage(BaseModel):
    quota: dict[str, int | str]
    model: dict[str, int | float]


class ChannelAccountIn(Body):
    channel: Channel
    external_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    display_name: Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)] = ""
    # The columns' own lengths: a longer value would fail at the insert, not here.
    app_secret: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=NO_NUL)]
    verify_token: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=NO_NUL)]
    access_token: Secret


class ChannelAccountOut(BaseModel):
    id: UUID
    channel: str
    external_id: str
    display_name: str
    created_at: datetime


class ChannelAccounts(BaseModel):
    accounts: list[ChannelAccountOut]


class MemberIn(Body):
    name: Name
    email: Annotated[str, StringConstraints(max_length=254, pattern=r"^$|^[^@\s]+@[^@\s]+$")] = ""
    role: Literal["owner", "staff"]


class MemberOut(BaseModel):
    id: UUID
    name: str
    email: str
    role: str
    created_at: datetime


class Members(BaseModel):
    members: list[MemberOut]


class KeyOut(BaseModel):
    id: UUID
    member_id: UUID | None
    prefix: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


class Keys(BaseModel):
    keys: list[KeyOut]


class IssuedKey(KeyOut):
    api_key: str = Field(description="Shown once: only its hash is kept")
