"""The on-call command groups, registered on the `sellmesh` command in sellmesh/cli.py."""

from sellmesh.ops.dlq_cli import dlq_app
from sellmesh.ops.groups_cli import groups_app
from sellmesh.ops.replay_cli import replay_app

__all__ = ["dlq_app", "groups_app", "replay_app"]
