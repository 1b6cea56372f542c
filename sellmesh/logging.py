"""Structured JSON logs; tenant, correlation and event ids ride along in context variables."""

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_CONTEXT: ContextVar[dict[str, str]] = ContextVar("sellmesh_log_context", default={})  # noqa: B039

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# What libraries stamp on records for their own use, not fields: litellm's mark that its filter already
# redacted the record (printed as "<object object at 0x...>"), uvicorn's copy of the message with ANSI colours.
_LIBRARY_MARKS = frozenset({"litellm_redacted", "color_message"})


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Attach ids (tenant_id, correlation_id, event_id, ...) to every log line inside the block."""
    merged = {**_CONTEXT.get(), **{k: str(v) for k, v in fields.items() if v is not None}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_CONTEXT.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in _LIBRARY_MARKS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka and litellm are chatty at INFO; their warnings still come through.
    for noisy in ("aiokafka", "LiteLLM", "litellm", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
