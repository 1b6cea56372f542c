"""HandoffServiceSettings: the handoff worker's own knobs (tenant choices live in the gateway's settings)."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class HandoffServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANDOFF_", extra="ignore")

    sweep_interval_seconds: float = 15.0
    mirror_reconcile_seconds: float = 300.0
    notify_poll_seconds: float = 1.0
    notify_max_attempts: int = 8
    notify_timeout_seconds: float = 5.0
    # Local use only (a developer's machine, the tests): also deliver over plain http and to loopback, private,
    # link-local and other non-public addresses. Off, a tenant's URL cannot aim the worker's POSTs inside the
    # network it runs in (a cloud's metadata service, an admin port on localhost, a database's HTTP API).
    notify_allow_local: bool = False
