"""What of a conversation fits the model's context: recent turns within a token budget, older ones summarized (pure)."""

from collections.abc import Sequence
from typing import Any

SUMMARY_CHARS = 1200
SNIPPET_CHARS = 120


def estimate_tokens(text: str) -> int:
    """About four characters a token for English; close enough to keep a budget, not to bill."""
    return len(text) // 4 + 1


def fit_turns(
    turns: Sequence[dict[str, Any]], *, budget_tokens: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(older turns that do not fit, newest turns that do), in order; the newest turn always fits."""
    kept: list[dict[str, Any]] = []
    used = 0
    for turn in reversed(turns):
        cost = estimate_tokens(str(turn.get("content") or ""))
        if kept and used + cost > budget_tokens:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    return list(turns[: len(turns) - len(kept)]), kept


def summarize(older: Sequence[dict[str, Any]], previous: str = "") -> str:
    """A deterministic, extractive summary: who said what, clipped; the newest part survives the cap."""
    lines = [previous] if previous else []
    for turn in older:
        who = "customer" if turn.get("role") == "user" else "you"
        text = " ".join(str(turn.get("content") or "").split())
        lines.append(f"{who}: {text[:SNIPPET_CHARS]}")
    summary = " | ".join(line for line in lines if line)
    return summary[-SUMMARY_CHARS:]
