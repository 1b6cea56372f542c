"""GatewaySettings: limits of the owners' API (environment variables with the GATEWAY_ prefix)."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    rate_limit_per_minute: int = Field(600, ge=1)
    max_body_bytes: int = Field(65536, ge=1024)
    # The handoff worker's own switch (services/handoff/settings.py), read here too: a notify URL the worker
    # would deliver to (plain http, a local receiver) is one the owners' API must accept, and none other.
    notify_allow_local: bool = Field(False, validation_alias="HANDOFF_NOTIFY_ALLOW_LOCAL")
