"""Which channel a webhook is for, and which connected accounts its entries address."""

from typing import Any

import pytest

from schemas.envelope import Channel
from services.ingest.payloads import messenger_text, whatsapp_text
from services.ingest.routing import MAX_ACCOUNTS, TooManyAccounts, UnroutableWebhook, account_ids, channel_of


def _wa_change(phone_number_id: str, field: str = "messages") -> dict[str, Any]:
    return {
        "field": field,
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "1555", "phone_number_id": phone_number_id},
        },
    }


def _wa_body(*entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": f"waba-{i}", "changes": changes} for i, changes in enumerate(entries)],
    }


@pytest.mark.parametrize(
    ("obj", "channel"),
    [("whatsapp_business_account", Channel.WHATSAPP), ("page", Channel.MESSENGER), ("instagram", Channel.INSTAGRAM)],
)
def test_channel_comes_from_the_object_field(obj: str, channel: Channel) -> None:
    assert channel_of({"object": obj, "entry": []}) is channel


@pytest.mark.parametrize("obj", ["user", "permissions", "", None, 7])
def test_an_unknown_object_is_unroutable(obj: object) -> None:
    with pytest.raises(UnroutableWebhook):
        channel_of({"object": obj})
    with pytest.raises(UnroutableWebhook):
        account_ids({"object": obj, "entry": [{"id": "1"}]})


def test_a_missing_object_is_unroutable() -> None:
    with pytest.raises(UnroutableWebhook):
        channel_of({"entry": [{"id": "1"}]})


def test_whatsapp_routes_by_phone_number_id_not_by_waba_id() -> None:
    body = whatsapp_text(phone_number_id="1001", customer="5215550002222", text="hola")
    assert account_ids(body) == ["1001"]


def test_whatsapp_collects_every_change_of_every_entry_in_order() -> None:
    body = _wa_body([_wa_change("1001"), _wa_change("1002")], [_wa_change("1003")])
    assert account_ids(body) == ["1001", "1002", "1003"]


def test_whatsapp_lists_each_phone_number_id_once() -> None:
    body = _wa_body([_wa_change("1001"), _wa_change("1002")], [_wa_change("1001"), _wa_change("1002")])
    assert account_ids(body) == ["1001", "1002"]


def test_whatsapp_skips_changes_without_metadata() -> None:
    body = _wa_body([{"field": "account_update", "value": {"event": "x"}}, "not-a-change", _wa_change("1001")])  # type: ignore[list-item]
    assert account_ids(body) == ["1001"]


def test_whatsapp_with_no_phone_number_id_anywhere_is_unroutable() -> None:
    with pytest.raises(UnroutableWebhook):
        account_ids(_wa_body([{"field": "messages", "value": {}}]))


def test_messenger_routes_by_the_page_id_of_each_entry() -> None:
    body = messenger_text(page_id="111", customer="222", text="hi")
    assert channel_of(body) is Channel.MESSENGER
    assert account_ids(body) == ["111"]


def test_instagram_routes_by_the_professional_account_id() -> None:
    body = messenger_text(page_id="17841400000000001", customer="680", text="hi", instagram=True)
    assert channel_of(body) is Channel.INSTAGRAM
    assert account_ids(body) == ["17841400000000001"]


def test_messenger_ids_are_strings_and_deduplicated() -> None:
    body = {"object": "page", "entry": [{"id": 111, "messaging": []}, {"id": "222"}, {"id": "111"}, {"time": 1}]}
    assert account_ids(body) == ["111", "222"]


@pytest.mark.parametrize("entries", [None, [], "entry", {"id": "1"}])
def test_a_webhook_without_entries_is_unroutable(entries: object) -> None:
    with pytest.raises(UnroutableWebhook):
        account_ids({"object": "page", "entry": entries})


def test_a_webhook_missing_the_entry_key_is_unroutable() -> None:
    with pytest.raises(UnroutableWebhook):
        account_ids({"object": "instagram"})


@pytest.mark.parametrize("entry", ["111", 111, None, ["111"]])
def test_an_entry_that_is_not_an_object_is_unroutable(entry: object) -> None:
    with pytest.raises(UnroutableWebhook, match="not an object"):
        account_ids({"object": "page", "entry": [{"id": "1"}, entry]})


def test_entries_without_ids_are_unroutable() -> None:
    with pytest.raises(UnroutableWebhook):
        account_ids({"object": "page", "entry": [{"time": 1}]})


def test_more_accounts_than_the_cap_are_refused_unless_the_cap_is_lifted() -> None:
    body = _wa_body(*([_wa_change(str(1000 + n))] for n in range(MAX_ACCOUNTS + 1)))
    with pytest.raises(TooManyAccounts):
        account_ids(body)
    # A body the platform's secret verified is Meta's own batch: every account it names is looked up.
    assert len(account_ids(body, limit=None)) == MAX_ACCOUNTS + 1
