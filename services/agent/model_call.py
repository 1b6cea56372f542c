"""One model call through litellm, measured: latency, tokens and cost per tenant tier."""

import logging
import time
from dataclasses import dataclass
from typing import Any

import litellm

from services.agent.metrics import MODEL_CALLS, MODEL_COST, MODEL_SECONDS, MODEL_TOKENS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    model: str
    fallbacks: list[str]
    timeout: float
    retries: int = 2


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0


async def call_model(
    choice: ModelChoice, *, messages: list[dict[str, Any]], tools: list[dict[str, Any]], tier: str, usage: Usage
) -> Any:
    """`litellm.acompletion` with tools, timeout, retries and fallbacks; raises once all of them failed."""
    started = time.perf_counter()
    try:
        response = await litellm.acompletion(
            model=choice.model,
            messages=messages,
            tools=tools,
            timeout=choice.timeout,
            num_retries=choice.retries,
            fallbacks=choice.fallbacks or None,
        )
    except Exception:
        MODEL_CALLS.labels(tier, "error").inc()
        raise
    finally:
        MODEL_SECONDS.labels(tier).observe(time.perf_counter() - started)
    MODEL_CALLS.labels(tier, "ok").inc()
    tokens = getattr(response, "usage", None)
    prompt, completion = (
        int(getattr(tokens, "prompt_tokens", 0) or 0),
        int(getattr(tokens, "completion_tokens", 0) or 0),
    )
    cost = _cost(response)
    MODEL_TOKENS.labels(tier, "prompt").inc(prompt)
    MODEL_TOKENS.labels(tier, "completion").inc(completion)
    MODEL_COST.labels(tier).inc(cost)
    usage.prompt_tokens += prompt
    usage.completion_tokens += completion
    usage.cost_usd += cost
    usage.calls += 1
    return response


def _cost(response: Any) -> float:
    """What litellm priced the call at. Its success logging already did the sum (None for a model it cannot
    price: the offline one, custom deployments); pricing it again costs more CPU than the offline call itself."""
    hidden = getattr(response, "_hidden_params", None) or {}
    if "response_cost" in hidden:
        return float(hidden["response_cost"] or 0.0)
    try:
        return float(litellm.completion_cost(completion_response=response))
    except Exception:
        return 0.0
