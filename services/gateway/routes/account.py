"""Who am I, usage, and the tenant's settings (training controls, payments, handoff, notification secret)."""

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel

from sellmesh.db import in_thread
from sellmesh.service import now
from services.agent.query import quota_usage, usage_totals
from services.gateway.auth import Principal
from services.gateway.context import Gateway
from services.gateway.models import FaqEntry, HandoffSettings, Me, NotifySecret, Settings, SettingsPatch, Usage
from services.gateway.problems import ProblemError
from services.gateway.query import tenant_name, tenant_training
from services.gateway.tenant_settings import read_settings, rotate_notify_secret, update_training

# Keys of the training JSON that live inside its "payments" object.
_PAYMENT_FIELDS = ("stripe_account", "success_url", "cancel_url")


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _plan_name(training: dict[str, Any]) -> str:
    plan = training.get("plan")
    if isinstance(plan, dict):
        plan = plan.get("name")
    return plan if isinstance(plan, str) else "free"


def _as_settings(training: dict[str, Any], notify_secret_set: bool) -> Settings:
    # Training written before this API (or by hand) may not fit the models: show what fits, drop the rest.
    stored = training.get("payments")
    payments: dict[str, Any] = stored if isinstance(stored, dict) else {}
    handoff = training.get("handoff")
    faq = training.get("faq")
    policies = training.get("policies")
    topics = training.get("refused_topics")
    return Settings(
        tone=_str(training.get("tone")),
        language=_str(training.get("language")),
        faq=[FaqEntry.model_validate(e) for e in faq if _fits(FaqEntry, e)] if isinstance(faq, list) else [],
        policies={k: v for k, v in policies.items() if isinstance(v, str)} if isinstance(policies, dict) else {},
        refused_topics=[t for t in topics if isinstance(t, str)] if isinstance(topics, list) else [],
        plan=_plan_name(training),
        stripe_account=_str(payments.get("stripe_account")),
        success_url=_str(payments.get("success_url")),
        cancel_url=_str(payments.get("cancel_url")),
        handoff=HandoffSettings.model_validate(handoff) if _fits(HandoffSettings, handoff) else HandoffSettings(),
        notify_secret_set=notify_secret_set,
    )


def _fits(model: type[BaseModel], value: object) -> bool:
    try:
        model.model_validate(value)
    except ValueError:
        return False
    return True


def _changes(patch: SettingsPatch, training: dict[str, Any]) -> dict[str, Any]:
    sent = patch.model_dump(mode="json", exclude_unset=True)
    changes: dict[str, Any] = {
        key: sent[key] for key in ("tone", "language", "faq", "policies", "refused_topics", "handoff") if key in sent
    }
    if any(key in sent for key in _PAYMENT_FIELDS):
        payments = dict(training.get("payments") or {}) if isinstance(training.get("payments"), dict) else {}
        for key in _PAYMENT_FIELDS:
            if key in sent:
                payments[key] = sent[key]
        changes["payments"] = {k: v for k, v in payments.items() if v is not None} or None
    return changes


def router(gw: Gateway) -> APIRouter:
    api = gw.router("account")

    @api.get("/me", response_model=Me)
    async def me(principal: Annotated[Principal, gw.require("me.read")]) -> Me:
        name = await in_thread(tenant_name, gw.engine, principal.tenant_id)
        return Me(
            tenant_id=principal.tenant_id,
            tenant_name=name,
            role=principal.role,
            member_id=principal.member_id,
            key_id=principal.key_id,
        )

    @api.get("/usage", response_model=Usage)
    async def usage(principal: Annotated[Principal, gw.require("usage.read")]) -> Usage:
        """The plan's AI quota this month and minute, and model tokens and cost since the month began."""
        at = now()
        training = await in_thread(tenant_training, gw.engine, principal.tenant_id)
        month_start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        totals = await in_thread(lambda: usage_totals(gw.engine, principal.tenant_id, since=month_start))
        return Usage(quota=await quota_usage(gw.redis, principal.tenant_id, training, at), model=totals)

    @api.get("/settings", response_model=Settings)
    async def settings(principal: Annotated[Principal, gw.require("settings.read")]) -> Settings:
        found = await in_thread(read_settings, gw.engine, principal.tenant_id)
        if found is None:
            raise ProblemError(404, "tenant not found")
        return _as_settings(*found)

    @api.patch("/settings", response_model=Settings)
    async def change_settings(
        patch: SettingsPatch, principal: Annotated[Principal, gw.require("settings.write")]
    ) -> Settings:
        """Training controls, checkout choices and handoff settings; the plan is the platform's to set."""
        found = await in_thread(read_settings, gw.engine, principal.tenant_id)
        if found is None:
            raise ProblemError(404, "tenant not found")
        changes = _changes(patch, found[0])
        training = await in_thread(update_training, gw.engine, principal.tenant_id, changes)
        if training is None:
            raise ProblemError(404, "tenant not found")
        return _as_settings(training, found[1])

    @api.post("/settings/notify-secret", response_model=NotifySecret, status_code=201)
    async def new_notify_secret(principal: Annotated[Principal, gw.require("notify_secret.rotate")]) -> NotifySecret:
        """A new secret signing handoff notifications (HMAC-SHA256); shown once, replaces the old one."""
        secret = await in_thread(rotate_notify_secret, gw.engine, principal.tenant_id)
        if secret is None:
            raise ProblemError(404, "tenant not found")
        return NotifySecret(notify_secret=secret)

    return api
