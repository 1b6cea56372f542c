"""The tenant's plan from its training JSON, and whether one more AI reply fits it."""

import pytest

from services.agent.plan import PLANS, Plan, QuotaOk, QuotaSpent, decide_quota, plan_of

SMALL = Plan("small", monthly_ai_replies=10, messages_per_minute=3)


def test_the_plans_grow_from_free_to_pro() -> None:
    assert PLANS["free"] == Plan("free", monthly_ai_replies=200, messages_per_minute=20)
    assert PLANS["standard"] == Plan("standard", monthly_ai_replies=5000, messages_per_minute=60)
    assert PLANS["pro"] == Plan("pro", monthly_ai_replies=50000, messages_per_minute=300)


@pytest.mark.parametrize("name", ["free", "standard", "pro"])
def test_a_plan_name_picks_that_plan(name: str) -> None:
    assert plan_of({"plan": name}) == PLANS[name]


@pytest.mark.parametrize("training", [{}, {"plan": "enterprise"}, {"plan": 3}, {"plan": None}, {"plan": ["pro"]}])
def test_a_missing_unknown_or_malformed_plan_is_free(training: dict[str, object]) -> None:
    assert plan_of(training) == PLANS["free"]


def test_a_plan_dict_overrides_the_named_plans_limits() -> None:
    training = {"plan": {"name": "standard", "monthly_ai_replies": 8000}}
    assert plan_of(training) == Plan("standard", monthly_ai_replies=8000, messages_per_minute=60)


def test_a_plan_dict_without_a_known_name_overrides_the_free_plan() -> None:
    training = {"plan": {"messages_per_minute": 5}}
    assert plan_of(training) == Plan("free", monthly_ai_replies=200, messages_per_minute=5)


@pytest.mark.parametrize("bad", [-1, "100", 1.5, True, None])
def test_a_malformed_limit_keeps_the_base_plans_value(bad: object) -> None:
    assert plan_of({"plan": {"name": "pro", "monthly_ai_replies": bad}}) == PLANS["pro"]


def test_a_limit_of_zero_is_kept() -> None:
    assert plan_of({"plan": {"name": "pro", "monthly_ai_replies": 0}}).monthly_ai_replies == 0


def test_a_reply_under_both_limits_is_ok_and_counts_itself() -> None:
    assert decide_quota(SMALL, 4, 1) == QuotaOk(used_this_month=5, used_this_minute=2)


def test_the_last_reply_of_the_month_still_fits() -> None:
    assert decide_quota(SMALL, 9, 0) == QuotaOk(used_this_month=10, used_this_minute=1)


def test_a_spent_month_refuses_with_the_monthly_limit() -> None:
    assert decide_quota(SMALL, 10, 0) == QuotaSpent("monthly_limit", 10)


def test_a_full_minute_refuses_with_the_minute_limit() -> None:
    assert decide_quota(SMALL, 5, 3) == QuotaSpent("minute_limit", 3)


def test_when_both_are_spent_the_month_is_reported() -> None:
    assert decide_quota(SMALL, 10, 3) == QuotaSpent("monthly_limit", 10)


def test_a_plan_with_no_replies_refuses_the_first() -> None:
    assert decide_quota(Plan("off", monthly_ai_replies=0, messages_per_minute=5), 0, 0) == QuotaSpent(
        "monthly_limit", 0
    )
