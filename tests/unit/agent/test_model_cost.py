"""A model call's cost comes from litellm's own pricing of it, without pricing the response a second time."""

from typing import Any

import litellm
import pytest

from services.agent import model_call


class Response:
    def __init__(self, hidden: dict[str, Any] | None) -> None:
        self._hidden_params = hidden


def test_the_cost_litellm_already_computed_is_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_price(**_: Any) -> float:
        raise AssertionError("priced twice")

    monkeypatch.setattr(litellm, "completion_cost", must_not_price)
    assert model_call._cost(Response({"response_cost": 0.0042})) == pytest.approx(0.0042)


def test_a_model_litellm_could_not_price_costs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(litellm, "completion_cost", lambda **_: pytest.fail("priced twice"))
    assert model_call._cost(Response({"response_cost": None})) == 0.0


def test_a_response_without_litellms_pricing_is_priced_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(litellm, "completion_cost", lambda **_: 0.5)
    assert model_call._cost(Response({})) == 0.5
    monkeypatch.setattr(litellm, "completion_cost", lambda **_: (_ for _ in ()).throw(ValueError("unknown model")))
    assert model_call._cost(Response(None)) == 0.0
