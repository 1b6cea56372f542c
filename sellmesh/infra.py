"""Resolves where the broker, database and Redis are, starting the embedded ones that are not configured."""

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType

from sellmesh.localbroker import BROKER_STATE_FILE, LocalBroker
from sellmesh.localredis import LocalRedis
from sellmesh.settings import MeshSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap_servers: str
    kafka_enable_idempotence: bool
    redis_url: str
    database_url: str
    local_broker: bool


class EmbeddedInfra:
    """Context manager: real services when settings name them, private local ones otherwise."""

    def __init__(self, settings: MeshSettings) -> None:
        self.settings = settings
        self._stack = ExitStack()

    def __enter__(self) -> Endpoints:
        s = self.settings
        s.sellmesh_var_dir.mkdir(parents=True, exist_ok=True)
        bootstrap = s.kafka_bootstrap_servers
        local_broker = bootstrap is None
        if bootstrap is None:
            broker = self._stack.enter_context(
                LocalBroker(
                    log_path=s.sellmesh_var_dir / "broker.log", state_path=s.sellmesh_var_dir / BROKER_STATE_FILE
                )
            )
            bootstrap = broker.bootstrap_servers
        redis_url = s.redis_url
        if redis_url is None:
            redis_url = self._stack.enter_context(LocalRedis()).url
        idempotence = s.kafka_enable_idempotence
        if idempotence is None:
            idempotence = not local_broker
        return Endpoints(
            kafka_bootstrap_servers=bootstrap,
            kafka_enable_idempotence=idempotence,
            redis_url=redis_url,
            database_url=s.effective_database_url,
            local_broker=local_broker,
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()
