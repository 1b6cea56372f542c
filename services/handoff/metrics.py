"""Handoff's metrics; tenant ids never become labels, reasons and outcomes (a handful of values) do."""

from prometheus_client import Counter, Gauge, Histogram

from sellmesh.metrics import registry

OPENED = Counter("sellmesh_handoffs_opened_total", "Handoff tickets opened, by reason.", ["reason"], registry=registry)
OPEN = Gauge("sellmesh_handoffs_open", "Handoff tickets open now (refreshed by the sweep).", registry=registry)
SLA_BREACHES = Counter(
    "sellmesh_handoff_sla_breaches_total", "Tickets that passed their first-response deadline.", registry=registry
)
ESCALATIONS = Counter(
    "sellmesh_handoff_escalations_total", "Escalations to the owner, by reason.", ["reason"], registry=registry
)
WAIT_SECONDS = Histogram(
    "sellmesh_handoff_wait_seconds",
    "Time from a ticket opening to the first reply by a person.",
    buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400),
    registry=registry,
)
REJECTED = Counter(
    "sellmesh_handoff_commands_rejected_total", "Handoff commands refused, by reason.", ["reason"], registry=registry
)
QUIET_RETURNS = Counter(
    "sellmesh_handoff_quiet_returns_total", "Tickets handed back to the AI after a quiet period.", registry=registry
)
NOTIFICATIONS = Counter(
    "sellmesh_handoff_notifications_total",
    "Notification webhook attempts, by outcome (delivered, retry, failed, dropped).",
    ["outcome"],
    registry=registry,
)
