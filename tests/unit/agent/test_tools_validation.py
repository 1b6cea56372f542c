"""The planner refuses what the model may not do: unknown tools, bad arguments, foreign products, prices."""

import json
from collections.abc import Callable

import jsonschema
import pytest

from services.agent.offline_model import decide
from services.agent.prompt import system_prompt
from services.agent.tools import TOOL_ARGS, Turn, plan, tool_definitions

TurnBuilder = Callable[..., Turn]


def _refused(name: str, arguments: str, make_turn: TurnBuilder) -> str:
    outcome = plan(name, arguments, make_turn())
    assert outcome.result["ok"] is False
    assert outcome.result["tool"] == name
    assert outcome.commands == []
    assert outcome.order_id is None
    return str(outcome.result["message"])


def test_an_unknown_tool_is_refused(make_turn: TurnBuilder) -> None:
    assert _refused("apply_discount", '{"percent": 50}', make_turn) == "Sorry, I can't do that here."


@pytest.mark.parametrize("arguments", ['{"sku": "ESP-1",', "not json", "[1, 2]", '"ESP-1"', "null", "{'sku': 'ESP-1'}"])
def test_arguments_that_are_not_a_json_object_are_refused(arguments: str, make_turn: TurnBuilder) -> None:
    assert "say it again" in _refused("add_to_order", arguments, make_turn)


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("add_to_order", {"sku": "ESP-1", "quantity": 1, "price": "0.01 EUR"}),
        ("add_to_order", {"sku": "ESP-1", "unit_price": 1}),
        ("request_checkout", {"discount": 10}),
        ("set_customer_details", {"address": "1 Main St", "vip": True}),
        ("request_human", {"reason": "customer_asked", "priority": "high"}),
    ],
)
def test_unknown_argument_fields_are_refused(name: str, arguments: dict[str, object], make_turn: TurnBuilder) -> None:
    _refused(name, json.dumps(arguments), make_turn)


@pytest.mark.parametrize("quantity", [0, -1, 1001, 5000, 2.5, "lots"])
def test_quantities_outside_one_to_a_thousand_are_refused(quantity: object, make_turn: TurnBuilder) -> None:
    _refused("add_to_order", json.dumps({"sku": "ESP-1", "quantity": quantity}), make_turn)


@pytest.mark.parametrize("sku", ["", "ESP 1", "ESP-1; DROP TABLE", "x" * 65])
def test_malformed_skus_are_refused(sku: str, make_turn: TurnBuilder) -> None:
    _refused("add_to_order", json.dumps({"sku": sku}), make_turn)


@pytest.mark.parametrize("name", ["add_to_order", "remove_from_order"])
def test_a_sku_outside_the_tenants_catalog_is_refused_without_any_command(name: str, make_turn: TurnBuilder) -> None:
    assert (
        _refused(name, '{"sku": "OTHER-TENANT-SKU", "quantity": 1}', make_turn) == "Sorry, we don't have that product."
    )


def test_a_missing_sku_is_refused(make_turn: TurnBuilder) -> None:
    _refused("add_to_order", '{"quantity": 2}', make_turn)


def test_an_unknown_handoff_reason_is_refused(make_turn: TurnBuilder) -> None:
    _refused("request_human", '{"reason": "guardrail"}', make_turn)


def test_overlong_customer_details_are_refused(make_turn: TurnBuilder) -> None:
    _refused("set_customer_details", json.dumps({"phone": "1" * 33}), make_turn)
    _refused("set_customer_details", json.dumps({"address": "x" * 501}), make_turn)


def test_every_tool_is_defined_as_a_function_with_an_object_schema() -> None:
    definitions = tool_definitions()
    assert [d["function"]["name"] for d in definitions] == list(TOOL_ARGS)
    assert set(TOOL_ARGS) == {
        "search_products",
        "show_order",
        "create_draft",
        "add_to_order",
        "remove_from_order",
        "set_customer_details",
        "request_checkout",
        "request_human",
    }
    for definition in definitions:
        assert definition["type"] == "function"
        function = definition["function"]
        assert isinstance(function["description"], str) and function["description"]
        parameters = function["parameters"]
        jsonschema.Draft202012Validator.check_schema(parameters)
        assert parameters["type"] == "object"
        assert parameters["additionalProperties"] is False
        assert isinstance(parameters.get("properties", {}), dict)
    assert json.loads(json.dumps(definitions)) == definitions


def test_tool_schemas_match_what_the_planner_accepts() -> None:
    schemas = {d["function"]["name"]: d["function"]["parameters"] for d in tool_definitions()}
    item = jsonschema.Draft202012Validator(schemas["add_to_order"])
    assert schemas["add_to_order"]["required"] == ["sku"]
    assert item.is_valid({"sku": "ESP-1", "quantity": 2})
    assert not item.is_valid({"sku": "ESP-1", "quantity": 0})
    assert not item.is_valid({"sku": "ESP-1", "quantity": 1001})
    assert not item.is_valid({"sku": "ESP-1", "price": 1})
    assert "price" not in json.dumps(schemas)


@pytest.mark.parametrize(
    "text", ["I want two espresso beans", "how do I pay", "my address is 1 Main St", "can I talk to a person"]
)
def test_the_offline_models_tool_calls_fit_the_published_schemas(text: str, make_turn: TurnBuilder) -> None:
    schemas = {d["function"]["name"]: d["function"]["parameters"] for d in tool_definitions()}
    system = system_prompt(business="Shop", training={}, products=list(make_turn().catalog.values()), order=None)
    _, calls = decide([{"role": "system", "content": system}, {"role": "user", "content": text}])
    assert calls
    for name, arguments in calls:
        jsonschema.validate(arguments, schemas[name])
