"""One record as the tools see it: where it sits, its raw bytes, and its decoded envelope or why it has none."""

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.registry import adapter_for
from schemas.topics import DLQ_SUFFIX
from sellmesh.ops.moment import from_millis

ORIGINAL_TOPIC_HEADER = "x-original-topic"
DECODE_ERROR_LIMIT = 500

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    timestamp: datetime
    key: bytes | None
    value: bytes
    headers: Headers
    event: dict[str, Any] | None
    decode_error: str | None

    @property
    def header_map(self) -> dict[str, str]:
        """Headers as text; the last value wins when a name repeats."""
        return {name: value.decode("utf-8", "replace") for name, value in self.headers}

    @property
    def key_text(self) -> str | None:
        return None if self.key is None else self.key.decode("utf-8", "replace")

    @property
    def event_type(self) -> str | None:
        """The envelope's `type`; from the `message_type` header when the body cannot be decoded."""
        if self.event is not None and isinstance(self.event.get("type"), str):
            return str(self.event["type"])
        return self.header_map.get("message_type")

    @property
    def tenant_id(self) -> str | None:
        if self.event is not None and self.event.get("tenant_id") is not None:
            return str(self.event["tenant_id"])
        return self.header_map.get("tenant_id")

    @property
    def value_base64(self) -> str:
        return base64.b64encode(self.value).decode("ascii")


def schema_topic(topic: str, headers: Headers) -> str:
    """The topic whose schema describes these bytes: a dead letter keeps its original topic's schema."""
    if not topic.endswith(DLQ_SUFFIX):
        return topic
    for name, value in headers:
        if name == ORIGINAL_TOPIC_HEADER:
            return value.decode("utf-8", "replace")
    return topic.removesuffix(DLQ_SUFFIX)


def decode(value: bytes, topic: str) -> tuple[dict[str, Any] | None, str | None]:
    """The validated envelope as JSON data, or None and the reason; garbage is a result here, not an error."""
    try:
        adapter = adapter_for(topic)
    except KeyError:
        return None, f"no schema is registered for topic {topic!r}"
    try:
        event = adapter.validate_json(value)
    except ValidationError as exc:
        return None, _summary(exc)
    data: dict[str, Any] = json.loads(event.model_dump_json())
    return data, None


def message_of(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None,
) -> Message:
    # Kafka allows a header without a value, which aiokafka hands over as None: read as empty.
    header_tuple = tuple((name, b"" if raw is None else bytes(raw)) for name, raw in headers or ())
    body = value or b""
    event, error = decode(body, schema_topic(topic, header_tuple))
    return Message(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=from_millis(timestamp_ms),
        key=key,
        value=body,
        headers=header_tuple,
        event=event,
        decode_error=error,
    )


def _summary(error: ValidationError) -> str:
    """The first few problems as `where: what`; pydantic's own text starts with the model name, not the problem."""
    problems = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item["loc"])
        problems.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
    more = error.error_count() - len(problems)
    text = "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
    return text[:DECODE_ERROR_LIMIT]
