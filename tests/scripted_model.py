"""A litellm provider that answers from a script, so tests can make the model misbehave on purpose."""

import json
import time
import uuid
from typing import Any

import litellm
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import ChatCompletionMessageToolCall, Choices, Function, Message, ModelResponse, Usage

PROVIDER = "sellmesh-script"

# customer text -> what the model says first: ("text", str) or ("tools", [(name, raw_arguments), ...]).
SCRIPTS: dict[str, tuple[str, Any]] = {}
# What it says after tool results, or when retried by a guardrail: the same again unless set.
AFTER_TOOLS = "Done as you asked."


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    return next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")


class ScriptedModel(CustomLLM):
    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        return self.completion(*args, **kwargs)

    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        messages: list[dict[str, Any]] = kwargs.get("messages") or []
        first_user = next((str(m.get("content") or "") for m in messages if m.get("role") == "user"), "")
        kind, value = SCRIPTS.get(_last_user_text(messages)) or SCRIPTS.get(first_user) or ("text", "Hello!")
        if messages and messages[-1].get("role") == "tool":
            kind, value = "text", AFTER_TOOLS
        calls = None
        text: str | None = None
        if kind == "tools":
            calls = [
                ChatCompletionMessageToolCall(
                    id=f"call_{uuid.uuid4().hex[:8]}", type="function", function=Function(name=n, arguments=a)
                )
                for n, a in value
            ]
        else:
            text = str(value)
        return ModelResponse(
            id=f"script-{uuid.uuid4().hex[:8]}",
            created=int(time.time()),
            model=kwargs.get("model", PROVIDER),
            choices=[
                Choices(
                    index=0,
                    finish_reason="tool_calls" if calls else "stop",
                    message=Message(role="assistant", content=text, tool_calls=calls),
                )
            ],
            usage=Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15),
        )


def register() -> None:
    if not any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": PROVIDER, "custom_handler": ScriptedModel()},
        ]


def arguments(**values: Any) -> str:
    return json.dumps(values)
