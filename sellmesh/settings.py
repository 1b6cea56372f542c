"""Mesh-wide settings read from the environment; every variable is listed in the README."""

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

OFFLINE_MODEL = "sellmesh-offline/sales-demo"


class MeshSettings(BaseSettings):
    """Unset infrastructure URLs mean "use the embedded default" (a local broker, SQLite, a private Redis)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    kafka_bootstrap_servers: str | None = None
    # None means: on for a real cluster, off for the local broker (it has no InitProducerId).
    kafka_enable_idempotence: bool | None = None
    database_url: str | None = None
    redis_url: str | None = None
    llm_model: str = OFFLINE_MODEL
    llm_fallback_models: str = ""
    llm_timeout_seconds: float = 30.0
    meta_graph_base_url: str | None = None
    meta_app_secret: SecretStr | None = None
    meta_max_body_bytes: int = 1_048_576
    stripe_api_base: str | None = None
    stripe_secret_key: SecretStr = SecretStr("sk_test_sandbox")
    stripe_webhook_secret: SecretStr | None = None
    sellmesh_http_host: str = "127.0.0.1"
    sellmesh_http_port: int = 8000
    sellmesh_var_dir: Path = Path("var")
    sellmesh_log_level: str = "INFO"
    sellmesh_handler_attempts: int = 4
    sellmesh_retry_base_seconds: float = 0.2
    sellmesh_dedup_ttl_seconds: int = 8 * 24 * 3600

    @property
    def public_base_url(self) -> str:
        return f"http://{self.sellmesh_http_host}:{self.sellmesh_http_port}"

    @property
    def graph_base_url(self) -> str:
        """The Graph API base; the built-in sandbox when no real one is configured."""
        return self.meta_graph_base_url or f"{self.public_base_url}/sandbox/graph"

    @property
    def stripe_base_url(self) -> str:
        return self.stripe_api_base or f"{self.public_base_url}/sandbox/stripe"

    @property
    def sqlite_path(self) -> Path:
        return self.sellmesh_var_dir / "sellmesh.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"
