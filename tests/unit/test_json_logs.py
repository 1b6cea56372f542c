"""Log lines are JSON with the context's ids and the record's own fields, and nothing libraries stamp for themselves."""

import json
import logging

from sellmesh.logging import JsonFormatter, log_context


def test_a_line_carries_its_fields_and_context_but_not_what_libraries_mark_records_with() -> None:
    record = logging.LogRecord("svc", logging.INFO, __file__, 1, "sent %s", ("reply",), None)
    record.tenant_id = "t-1"
    record.litellm_redacted = object()  # litellm's filter marks every record it has seen
    record.color_message = "\\x1b[36msent\\x1b[0m"  # uvicorn's coloured copy of the message
    with log_context(correlation_id="c-1"):
        line = json.loads(JsonFormatter().format(record))
    assert {k: line[k] for k in ("msg", "tenant_id", "correlation_id")} == {
        "msg": "sent reply",
        "tenant_id": "t-1",
        "correlation_id": "c-1",
    }
    assert "litellm_redacted" not in line and "color_message" not in line
