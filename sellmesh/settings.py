"""Mesh-wide settings read from the environment; every variable is listed in the README."""

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from sellmesh.event_loop import EventLoopName

OFFLINE_MODEL = "sellmesh-offline/sales-demo"
# The built-in Stripe sandbox's key and webhook signing secret: public by design, refused for real Stripe.
SANDBOX_STRIPE_SECRET_KEY = "sk_test_sandbox"
SANDBOX_STRIPE_WEBHOOK_SECRET = "whsec_sellmesh_sandbox_not_a_secret"


class MeshSettings(BaseSettings):
    """Unset infrastructure URLs mean "use the embedded default" (a local broker, SQLite, a private Redis)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    kafka_bootstrap_servers: str | None = None
    # None means: on for a real cluster, off for the local broker (it has no InitProducerId).
    kafka_enable_idempotence: bool | None = None
    # Whether a worker creates a missing topic it subscribes to (with one partition). Deployments turn
    # it off: topics come from `sellmesh topics` with the layout in sellmesh/topology.py.
    kafka_create_topics: bool = True
    # aiokafka consumers per consumer group in one process (a group's subscriptions share its consumers). Each
    # gets its share of the partitions and handles them one message at a time, so partitions proceed
    # concurrently and order holds per key. With 1, the one consumer fetches batches instead.
    kafka_consumers_per_subscription: int = Field(default=1, ge=1, le=32)
    # How long the group waits for a silent consumer before moving its partitions. The broker also holds a
    # join for about half of it, so a shorter session starts workers faster at the cost of tolerating shorter
    # stalls (heartbeats go every third of it).
    kafka_session_timeout_ms: int = Field(default=10_000, ge=3_000, le=300_000)
    # How long the broker may hold a consumer's fetch when nothing is there. The local broker looks for new
    # records in a held fetch only once half of this wait has passed, so a record arriving d ms into it waits
    # about wait/2 - d ms (measured: 54, 43, 23, 8.5 ms at d = 0, 10, 30, 70 with 100; 254 to 103 ms with
    # 500). Kafka answers at once. The price of a short wait is idle fetching, about two fetches per wait per
    # consumer: idle, the five-process mesh with 13 consumers (before one consumer per group) cost 12 % of a
    # core and the broker 21 % at 100, 30 % and 56 % at 20.
    kafka_fetch_max_wait_ms: int = Field(default=100, ge=10, le=5_000)
    # How often a consumer commits the offsets it finished (`sellmesh/commits.py`); 0 commits after every batch.
    # A crash delivers at most this much finished work again, which dedup drops; a revoke or stop commits at once.
    kafka_commit_interval_ms: int = Field(default=200, ge=0, le=10_000)
    database_url: str | None = None
    redis_url: str | None = None
    llm_model: str = OFFLINE_MODEL
    llm_fallback_models: str = ""
    llm_timeout_seconds: float = 30.0
    # How long a conversation must be quiet before the agent answers its burst of fragments.
    agent_quiet_seconds: float = 1.2
    meta_graph_base_url: str | None = None
    meta_app_secret: SecretStr | None = None
    meta_max_body_bytes: int = 1_048_576
    stripe_api_base: str | None = None
    stripe_secret_key: SecretStr = SecretStr(SANDBOX_STRIPE_SECRET_KEY)
    stripe_webhook_secret: SecretStr | None = None
    stripe_webhook_max_body_bytes: int = 524_288
    # Whether the sandbox posts signed webhooks (to STRIPE_SANDBOX_WEBHOOK_URL, default this process's edge).
    stripe_sandbox_send_webhooks: bool = True
    stripe_sandbox_webhook_url: str | None = None
    payments_sweep_interval_seconds: float = 30.0
    payments_sweep_overlap_seconds: int = 300
    payments_sweep_lookback_seconds: int = 24 * 3600
    sellmesh_http_host: str = "127.0.0.1"
    sellmesh_http_port: int = 8000
    sellmesh_var_dir: Path = Path("var")
    sellmesh_log_level: str = "INFO"
    # The event loop of `sellmesh up` and `sellmesh run` (sellmesh/event_loop.py says why uvloop).
    sellmesh_event_loop: EventLoopName = "uvloop"
    # Allocations (less deallocations) between the collector's young-generation passes in `sellmesh up` and
    # `sellmesh run`; Python's default is 700 (sellmesh/cli.py says why it is raised).
    sellmesh_gc_young_threshold: int = Field(default=10_000, ge=100, le=1_000_000)
    sellmesh_handler_attempts: int = 4
    sellmesh_retry_base_seconds: float = 0.2
    sellmesh_dedup_ttl_seconds: int = 8 * 24 * 3600
    # Per channel account (Page, Instagram account, WhatsApp number), shared by every sender replica.
    sellmesh_send_rate_per_second: float = 20.0
    sellmesh_send_burst: int = 40

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
    def stripe_webhook_signing_secret(self) -> str | None:
        """STRIPE_WEBHOOK_SECRET; unset, the sandbox's fixed secret, but only while the key is the sandbox's."""
        if self.stripe_webhook_secret is not None:
            return self.stripe_webhook_secret.get_secret_value()
        if self.stripe_secret_key.get_secret_value() == SANDBOX_STRIPE_SECRET_KEY:
            return SANDBOX_STRIPE_WEBHOOK_SECRET
        return None

    @property
    def sandbox_stripe_webhook_url(self) -> str | None:
        if not self.stripe_sandbox_send_webhooks:
            return None
        return self.stripe_sandbox_webhook_url or f"{self.public_base_url}/webhooks/stripe"

    @property
    def sqlite_path(self) -> Path:
        return self.sellmesh_var_dir / "sellmesh.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"
