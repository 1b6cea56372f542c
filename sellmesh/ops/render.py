"""How the tools print: one JSON object per line for machines, aligned tables for people."""

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sellmesh.ops.message import Message

ERROR_HEADERS = ("x-error-kind", "x-error-type", "x-error-message", "x-consumer-group", "x-handler", "x-failed-at")
CELL_LIMIT = 60


def message_record(message: Message) -> dict[str, Any]:
    """A message as JSON data: the decoded envelope, or the raw bytes in base64 and why decoding failed."""
    record: dict[str, Any] = {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp": message.timestamp.isoformat(),
        "key": message.key_text,
        "headers": message.header_map,
    }
    if message.event is not None:
        record["event"] = message.event
    else:
        record["value_base64"] = message.value_base64
        record["decode_error"] = message.decode_error
    return record


def json_line(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=False, ensure_ascii=False, default=str)


def table(headings: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns; long cells are cut so one message stays on one line."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headings]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headings, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def by_position(message: Message) -> tuple[int, int]:
    """Tables list a partition's messages together, in offset order (reads interleave partitions)."""
    return message.partition, message.offset


MESSAGE_HEADINGS = ("partition", "offset", "time", "key", "type", "tenant", "note")


def message_row(message: Message, *, dead_letter: bool = False) -> tuple[object, ...]:
    headers = message.header_map
    if dead_letter:
        note = f"{headers.get('x-error-kind', '?')}: {headers.get('x-error-message', '')}"
    elif message.decode_error is not None:
        note = f"undecodable: {message.decode_error}"
    else:
        note = ""
    return (
        message.partition,
        message.offset,
        message.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
        message.key_text or "",
        message.event_type or "?",
        message.tenant_id or "?",
        note,
    )


def dead_letter_record(message: Message) -> dict[str, Any]:
    """A dead letter as JSON data: the error headers pulled up front, then the message as usual."""
    headers = message.header_map
    error = {name.removeprefix("x-"): headers[name] for name in ERROR_HEADERS if name in headers}
    return {"error": error, "original_topic": headers.get("x-original-topic"), **message_record(message)}


def _cell(value: object) -> str:
    text = "" if value is None else str(value).replace("\n", " ")
    return text if len(text) <= CELL_LIMIT else text[: CELL_LIMIT - 1] + "…"
