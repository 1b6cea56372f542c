"""The tools find the services' broker: the configured one, else the embedded one `sellmesh up` recorded."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from sellmesh.localbroker import BROKER_STATE_FILE
from sellmesh.ops.address import resolve_broker
from sellmesh.ops.errors import BrokerUnavailable
from sellmesh.settings import MeshSettings


def settings(var_dir: Path, **values: object) -> MeshSettings:
    return MeshSettings(sellmesh_var_dir=var_dir, **values)  # type: ignore[arg-type]


def test_the_configured_broker_wins_with_idempotence_on_unless_turned_off(tmp_path: Path) -> None:
    address = resolve_broker(settings(tmp_path, kafka_bootstrap_servers="kafka:9092"))
    assert (address.bootstrap_servers, address.enable_idempotence) == ("kafka:9092", True)
    off = resolve_broker(settings(tmp_path, kafka_bootstrap_servers="kafka:9092", kafka_enable_idempotence=False))
    assert off.enable_idempotence is False


def test_the_embedded_broker_is_found_through_its_state_file(tmp_path: Path) -> None:
    state = {"bootstrap_servers": "127.0.0.1:40001", "pid": os.getpid()}
    (tmp_path / BROKER_STATE_FILE).write_text(json.dumps(state))
    address = resolve_broker(settings(tmp_path))
    assert (address.bootstrap_servers, address.enable_idempotence) == ("127.0.0.1:40001", False)


def test_no_broker_anywhere_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(BrokerUnavailable, match="set KAFKA_BOOTSTRAP_SERVERS"):
        resolve_broker(settings(tmp_path))


def test_a_state_file_left_by_a_stopped_broker_is_not_trusted(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / BROKER_STATE_FILE).write_text(json.dumps({"bootstrap_servers": "127.0.0.1:1", "pid": gone.pid}))
    with pytest.raises(BrokerUnavailable, match="no longer running"):
        resolve_broker(settings(tmp_path))
    (tmp_path / BROKER_STATE_FILE).write_text("{broken")
    with pytest.raises(BrokerUnavailable, match="unreadable"):
        resolve_broker(settings(tmp_path))
