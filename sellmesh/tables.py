"""Collects every table's metadata for migrations; the only runtime module that names the services."""

import importlib

from sqlalchemy import MetaData
from sqlmodel import SQLModel

import sellmesh.outbox  # noqa: F401  (the outbox table is runtime plumbing)

TABLE_MODULES = (
    "services.gateway.store",
    "services.gateway.tables",
    "services.ingest.store",
    "services.orders.store",
    "services.payments.store",
    "services.handoff.store",
    "services.handoff.inbox",
    "services.handoff.staff",
    "services.handoff.notification",
    "services.agent.store",
)

for module in TABLE_MODULES:
    importlib.import_module(module)

metadata: MetaData = SQLModel.metadata
