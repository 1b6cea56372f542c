"""The agent's metrics; tenant ids never become labels, the plan tier (a handful of values) does."""

from typing import get_args

from prometheus_client import Counter, Histogram

from sellmesh.metrics import registry
from services.agent.guardrails import ViolationKind

MODEL_CALLS = Counter(
    "sellmesh_agent_model_calls_total",
    "Model calls through litellm, by outcome.",
    ["tier", "outcome"],
    registry=registry,
)
MODEL_TOKENS = Counter(
    "sellmesh_agent_model_tokens_total", "Tokens used by model calls.", ["tier", "kind"], registry=registry
)
MODEL_COST = Counter(
    "sellmesh_agent_model_cost_usd_total",
    "Model cost as litellm prices it (0 for the offline model).",
    ["tier"],
    registry=registry,
)
MODEL_SECONDS = Histogram("sellmesh_agent_model_seconds", "Latency of one model call.", ["tier"], registry=registry)
TOOL_REFUSALS = Counter(
    "sellmesh_agent_tool_refusals_total", "Tool calls refused before reaching a service.", ["reason"], registry=registry
)
GUARDRAIL_HITS = Counter(
    "sellmesh_agent_guardrail_hits_total", "Replies stopped by a guardrail, by kind.", ["kind"], registry=registry
)
for _kind in get_args(ViolationKind):
    GUARDRAIL_HITS.labels(_kind)  # at zero, so the first hit of each kind is an increase
HANDOFFS_REQUESTED = Counter(
    "sellmesh_agent_handoffs_requested_total", "Handoffs the agent asked for, by reason.", ["reason"], registry=registry
)
BURST_SIZE = Histogram(
    "sellmesh_agent_burst_messages",
    "Customer messages answered by one reply.",
    buckets=(1, 2, 3, 5, 8, 13),
    registry=registry,
)
USAGE_NOT_RECORDED = Counter(
    "sellmesh_agent_usage_not_recorded_total",
    "Turns whose model usage row could not be written (the answer went out regardless).",
    registry=registry,
)
TURNS_GIVEN_UP = Counter(
    "sellmesh_agent_turns_given_up_total",
    "Conversations whose turn failed too often: a person was asked for instead.",
    registry=registry,
)
UNREADABLE_ENTRIES = Counter(
    "sellmesh_agent_unreadable_buffered_total",
    "Buffered customer messages no worker could read (a schema it does not know): dropped with their burst.",
    registry=registry,
)
