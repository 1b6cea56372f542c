"""The notify_url an owner may set: https to a host that does not name, by itself, a place inside the network,
unless the deployment delivers to local receivers (HANDOFF_NOTIFY_ALLOW_LOCAL)."""

import pytest
from pydantic import ValidationError

from services.gateway.deployment import notify_rules
from services.gateway.models import HandoffSettings, HandoffSettingsIn, refuse_inside

INSIDE = [
    "https://localhost/h",
    "https://LOCALHOST./h",
    "https://admin.localhost:8443/h",
    "https://127.0.0.1/h",
    "https://127.1/h",
    "https://0x7f.1/h",
    "https://2130706433/h",
    "https://[::1]:8443/h",
    "https://[::ffff:127.0.0.1]/h",
    "https://0.0.0.0/h",
    "https://169.254.169.254/latest/meta-data/",
    "https://[fe80::1]/h",
    "https://10.0.0.5/h",
    "https://172.16.4.4/h",
    "https://192.168.1.1/h",
    "https://100.64.0.1/h",
    "https://224.0.0.251/h",
    "https://240.0.0.1/h",
    "https://user@127.0.0.1/h",
    # IPv6 addresses that carry an IPv4 one and reach it through a translator or tunnel.
    "https://[64:ff9b::a9fe:a9fe]/h",
    "https://[64:ff9b:1::a00:1]/h",
    "https://[::ffff:0:7f00:1]/h",
    "https://[::a00:1]/h",
    "https://[2002:a9fe:a9fe::1]/h",
]


@pytest.mark.parametrize("url", INSIDE)
def test_a_url_naming_localhost_or_a_non_public_address_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="must not name"):
        refuse_inside(url, allow_local=False)
    with pytest.raises(ValidationError, match="must not name"):
        HandoffSettingsIn(notify_url=url)


@pytest.mark.parametrize("url", ["https://%31%32%37.0.0.1/h", "https://%6c%6fcalhost/h"])
def test_a_percent_encoded_host_is_refused_at_once_not_only_when_a_notification_is_sent(url: str) -> None:
    with pytest.raises(ValidationError, match="must not percent-encode its host"):
        HandoffSettingsIn(notify_url=url)


def test_plain_http_is_refused() -> None:
    with pytest.raises(ValidationError, match="must be an https URL"):
        HandoffSettingsIn(notify_url="http://hooks.example.com/h")


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/h", "hooks.example.com/h", "https://"])
def test_what_is_not_an_http_url_is_refused_by_the_body_itself(url: str) -> None:
    with pytest.raises(ValidationError, match="notify_url"):
        HandoffSettingsIn(notify_url=url)


@pytest.mark.parametrize("url", [*INSIDE, "http://127.0.0.1:8080/hook", "http://hooks.example.com/h"])
def test_a_deployment_that_delivers_locally_takes_local_and_plain_http_urls(url: str) -> None:
    """The worker posts to these with HANDOFF_NOTIFY_ALLOW_LOCAL set, so the API must let an owner set them."""
    refuse_inside(url, allow_local=True)
    with notify_rules(allow_local=True):
        assert HandoffSettingsIn(notify_url=url).notify_url == url
    # The switch is the request's, not the process's: outside it the URL is refused again.
    with pytest.raises(ValidationError, match="notify_url"):
        HandoffSettingsIn(notify_url=url)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/sellmesh?token=abc",
        "https://93.184.215.14:8443/h",
        "https://[2606:4700:4700::1111]/h",
        "https://localhost.example.com/h",
    ],
)
def test_public_https_urls_are_accepted(url: str) -> None:
    refuse_inside(url, allow_local=False)
    assert HandoffSettingsIn(notify_url=url).notify_url == url


def test_a_url_stored_before_the_rules_is_still_shown() -> None:
    """Reading settings uses the lenient model, so a stored URL the worker now refuses does not vanish from view."""
    assert HandoffSettings(notify_url="http://10.0.0.5/h").notify_url == "http://10.0.0.5/h"
