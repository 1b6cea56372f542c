"""Reading Stripe's bracket-notation form bodies back into nested values, the way the sandbox needs them."""

from urllib.parse import parse_qsl

import pytest

from sellmesh.sandbox.stripe_form import (
    FormError,
    as_dict,
    as_list,
    as_metadata,
    as_uint,
    parse_form,
    reject_unknown,
)


def form(body: str) -> dict[str, object]:
    return dict(parse_form(parse_qsl(body, keep_blank_values=True)))


def test_nests_bracketed_names_into_dicts() -> None:
    body = "mode=payment&metadata[order_id]=o1&metadata[tenant_id]=t1&payment_intent_data[metadata][order_id]=o1"
    assert form(body) == {
        "mode": "payment",
        "metadata": {"order_id": "o1", "tenant_id": "t1"},
        "payment_intent_data": {"metadata": {"order_id": "o1"}},
    }


def test_reads_indexed_line_items_as_a_list_of_nested_objects() -> None:
    body = (
        "line_items[0][price_data][unit_amount]=1250&line_items[0][price_data][product_data][name]=Mug"
        "&line_items[0][quantity]=2&line_items[1][quantity]=1&line_items[1][price_data][unit_amount]=2000"
    )
    items = as_list(parse_form(parse_qsl(body))["line_items"], "line_items")
    assert items == [
        {"price_data": {"unit_amount": "1250", "product_data": {"name": "Mug"}}, "quantity": "2"},
        {"quantity": "1", "price_data": {"unit_amount": "2000"}},
    ]


def test_indices_arriving_out_of_order_still_make_an_ordered_list() -> None:
    assert as_list(parse_form([("types[1]", "b"), ("types[0]", "a")])["types"], "types") == ["a", "b"]


def test_empty_brackets_append_to_an_array() -> None:
    assert as_list(parse_form(parse_qsl("expand[]=a&expand[]=b"))["expand"], "expand") == ["a", "b"]


def test_numeric_keys_stay_map_keys_until_an_array_is_expected() -> None:
    parsed = parse_form(parse_qsl("metadata[2024]=launch"))
    assert as_metadata(parsed["metadata"], "metadata") == {"2024": "launch"}


def test_a_missing_array_is_empty() -> None:
    assert as_list(None, "line_items") == []


def test_values_keep_percent_decoding_and_unicode() -> None:
    assert form("metadata[note]=caf%C3%A9+%26+more") == {"metadata": {"note": "café & more"}}


@pytest.mark.parametrize(
    ("pairs", "param"),
    [
        ([("a[b", "1")], "a[b"),
        ([("[b]", "1")], "[b]"),
        ([("a]b", "1")], "a]b"),
        ([("a", "1"), ("a[b]", "2")], "a[b]"),
        ([("a[b]", "1"), ("a", "2")], "a"),
        ([("a[b]", "1"), ("a[b]", "2")], "a[b]"),
        ([("a[][b]", "1")], "a[][b]"),
    ],
)
def test_rejects_malformed_duplicate_or_conflicting_names(pairs: list[tuple[str, str]], param: str) -> None:
    with pytest.raises(FormError) as raised:
        parse_form(pairs)
    assert raised.value.param == param


def test_rejects_arrays_with_gaps_or_named_keys() -> None:
    with pytest.raises(FormError, match="Invalid array"):
        as_list(parse_form([("line_items[0]", "a"), ("line_items[2]", "b")])["line_items"], "line_items")
    with pytest.raises(FormError, match="Invalid array"):
        as_list(parse_form([("line_items[x]", "a")])["line_items"], "line_items")


def test_an_empty_value_unsets_an_object_or_a_metadata_key() -> None:
    assert as_dict("", "metadata") == {}
    assert as_metadata(parse_form([("metadata[a]", ""), ("metadata[b]", "1")])["metadata"], "metadata") == {"b": "1"}


def test_metadata_keeps_stripes_limits() -> None:
    with pytest.raises(FormError):
        as_metadata({f"k{i}": "v" for i in range(51)}, "metadata")
    with pytest.raises(FormError):
        as_metadata({"k" * 41: "v"}, "metadata")
    with pytest.raises(FormError):
        as_metadata({"k": "v" * 501}, "metadata")


@pytest.mark.parametrize("value", ["-1", "1.5", "", "12abc", "9" * 16])
def test_integers_must_be_plain_non_negative_digits(value: str) -> None:
    with pytest.raises(FormError):
        as_uint(value, "expires_at")


def test_unknown_parameters_are_named_in_brackets() -> None:
    with pytest.raises(FormError) as raised:
        reject_unknown({"quantity": "1", "colour": "red"}, ("quantity",), prefix="line_items[0]")
    assert raised.value.param == "line_items[0][colour]"
