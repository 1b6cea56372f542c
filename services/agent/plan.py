"""The tenant's plan (AI replies per month, messages per minute) and whether one more reply fits it (pure)."""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal


@dataclass(frozen=True)
class Plan:
    name: str
    monthly_ai_replies: int
    messages_per_minute: int


PLANS: Mapping[str, Plan] = MappingProxyType(
    {
        "free": Plan("free", monthly_ai_replies=200, messages_per_minute=20),
        "standard": Plan("standard", monthly_ai_replies=5000, messages_per_minute=60),
        "pro": Plan("pro", monthly_ai_replies=50000, messages_per_minute=300),
    }
)
DEFAULT_PLAN = PLANS["free"]


@dataclass(frozen=True)
class QuotaOk:
    """One more reply fits; the counts include it."""

    used_this_month: int
    used_this_minute: int


@dataclass(frozen=True)
class QuotaSpent:
    """No reply now: the month's AI replies are used up (hand over), or the minute's rate is (wait)."""

    reason: Literal["monthly_limit", "minute_limit"]
    limit: int


def plan_of(training: Mapping[str, object]) -> Plan:
    """The plan in the training JSON's "plan": a plan name, or {"name": ..., <limit>: <int>, ...} to override limits.

    Anything unknown or malformed falls back to the free plan's values; a limit must be a whole number >= 0.
    """
    raw = training.get("plan")
    if isinstance(raw, str):
        return PLANS.get(raw, DEFAULT_PLAN)
    if not isinstance(raw, Mapping):
        return DEFAULT_PLAN
    name = raw.get("name")
    base = PLANS.get(name, DEFAULT_PLAN) if isinstance(name, str) else DEFAULT_PLAN
    return Plan(
        base.name,
        monthly_ai_replies=_limit(raw.get("monthly_ai_replies"), base.monthly_ai_replies),
        messages_per_minute=_limit(raw.get("messages_per_minute"), base.messages_per_minute),
    )


def _limit(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def decide_quota(plan: Plan, used_this_month: int, used_this_minute: int) -> QuotaOk | QuotaSpent:
    """Whether one more AI reply fits, given the counts before it; the month is checked first."""
    if used_this_month >= plan.monthly_ai_replies:
        return QuotaSpent("monthly_limit", plan.monthly_ai_replies)
    if used_this_minute >= plan.messages_per_minute:
        return QuotaSpent("minute_limit", plan.messages_per_minute)
    return QuotaOk(used_this_month + 1, used_this_minute + 1)
