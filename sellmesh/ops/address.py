"""Where the services' broker is: the configured one, or the embedded one a local `sellmesh up` recorded."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from sellmesh.localbroker import BROKER_STATE_FILE
from sellmesh.ops.errors import BrokerUnavailable
from sellmesh.settings import MeshSettings


@dataclass(frozen=True)
class BrokerAddress:
    bootstrap_servers: str
    enable_idempotence: bool
    source: str


def resolve_broker(settings: MeshSettings) -> BrokerAddress:
    """The services' broker: KAFKA_BOOTSTRAP_SERVERS, else the embedded one a local `sellmesh up` recorded."""
    if settings.kafka_bootstrap_servers:
        idempotence = settings.kafka_enable_idempotence
        return BrokerAddress(
            settings.kafka_bootstrap_servers, True if idempotence is None else idempotence, "KAFKA_BOOTSTRAP_SERVERS"
        )
    state_path = settings.sellmesh_var_dir / BROKER_STATE_FILE
    bootstrap = _running_local_broker(state_path)
    # The embedded broker has no InitProducerId, so an idempotent producer cannot start on it.
    return BrokerAddress(bootstrap, bool(settings.kafka_enable_idempotence), str(state_path))


def _running_local_broker(state_path: Path) -> str:
    if not state_path.exists():
        raise BrokerUnavailable(
            "no broker configured: set KAFKA_BOOTSTRAP_SERVERS to the services' value, "
            f"or start `sellmesh up` here (it records its embedded broker in {state_path})"
        )
    try:
        state = json.loads(state_path.read_text())
        bootstrap, pid = str(state["bootstrap_servers"]), int(state["pid"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BrokerUnavailable(f"{state_path} is unreadable ({exc}); set KAFKA_BOOTSTRAP_SERVERS") from None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise BrokerUnavailable(
            f"{state_path} names an embedded broker (pid {pid}) that is no longer running; start `sellmesh up`"
        ) from None
    except PermissionError:
        pass  # alive, owned by another user
    return bootstrap
