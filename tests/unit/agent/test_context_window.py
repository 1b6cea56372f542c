"""The conversation context: the newest turns within a token budget, the rest summarized."""

from services.agent.context_window import SUMMARY_CHARS, estimate_tokens, fit_turns, summarize


def turn(role: str, text: str) -> dict[str, str]:
    return {"role": role, "content": text}


def test_all_turns_fit_a_large_budget() -> None:
    turns = [turn("user", "hi"), turn("assistant", "hello")]
    assert fit_turns(turns, budget_tokens=1000) == ([], turns)


def test_older_turns_fall_out_of_a_small_budget_in_order() -> None:
    turns = [turn("user", "a" * 400), turn("assistant", "b" * 400), turn("user", "c" * 40)]
    older, recent = fit_turns(turns, budget_tokens=estimate_tokens("b" * 400) + estimate_tokens("c" * 40))
    assert older == turns[:1]
    assert recent == turns[1:]


def test_the_newest_turn_is_kept_even_over_budget() -> None:
    turns = [turn("user", "x" * 10_000)]
    assert fit_turns(turns, budget_tokens=10) == ([], turns)


def test_summary_says_who_said_what_and_keeps_the_newest_part_under_the_cap() -> None:
    summary = summarize([turn("user", "I want   two mugs"), turn("assistant", "Added two mugs")], "earlier bits")
    assert summary == "earlier bits | customer: I want two mugs | you: Added two mugs"
    long = summarize([turn("user", f"message {i} " + "z" * 200) for i in range(50)])
    assert len(long) == SUMMARY_CHARS
    assert "message 49" in long


def test_empty_history_has_an_empty_summary() -> None:
    assert summarize([]) == ""
