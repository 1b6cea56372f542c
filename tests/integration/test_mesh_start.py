"""What a process builds before it serves: the `on_built` hook (the CLI settles the garbage collector there) runs
once, after every service is built and before the HTTP port takes a connection or a consumer fetches."""

import socket
from pathlib import Path

from sellmesh.localbroker import free_port
from sellmesh.mesh import Mesh
from sellmesh.settings import MeshSettings


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_the_built_hook_runs_once_before_anything_is_served(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = MeshSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_enable_idempotence=False,  # the local broker has no InitProducerId
        redis_url=redis_url,
        database_url=f"sqlite:///{tmp_path / 'mesh.db'}",
        sellmesh_http_port=port,
        sellmesh_var_dir=tmp_path,
    )
    serving_when_built: list[bool] = []
    mesh = Mesh(settings, ["orders"], on_built=lambda: serving_when_built.append(port_open(port)))
    async with mesh:
        assert mesh.ctx is not None and port_open(port)
    assert serving_when_built == [False]
