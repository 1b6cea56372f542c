"""Meta's X-Hub-Signature-256 check: the exact raw bytes, the secret, and the header's shape."""

import hashlib
import hmac
import json

from services.ingest.payloads import encode, whatsapp_text
from services.ingest.signature import header_well_formed, sign, signature_ok

SECRET = "app-secret-1"
RAW = b'{"object":"page","entry":[]}'


def _non_ascii_body() -> dict[str, object]:
    return whatsapp_text(
        phone_number_id="1001", customer="5215550002222", text="un caf\u00e9 \u00e4\u00f6\u00e5 \U0001f600"
    )


def test_sign_is_hmac_sha256_of_the_raw_bytes_in_lowercase_hex() -> None:
    expected = hmac.new(SECRET.encode(), RAW, hashlib.sha256).hexdigest()
    assert sign(RAW, SECRET) == f"sha256={expected}"


def test_accepts_the_signature_meta_would_send() -> None:
    assert signature_ok(RAW, sign(RAW, SECRET), SECRET)


def test_rejects_signature_made_with_another_secret() -> None:
    assert not signature_ok(RAW, sign(RAW, "another-secret"), SECRET)


def test_rejects_a_body_changed_after_signing() -> None:
    assert not signature_ok(RAW + b" ", sign(RAW, SECRET), SECRET)


def test_rejects_a_missing_header() -> None:
    assert not signature_ok(RAW, None, SECRET)
    assert not signature_ok(RAW, "", SECRET)


def test_rejects_the_legacy_sha1_header_even_when_its_digest_is_right() -> None:
    sha1 = "sha1=" + hmac.new(SECRET.encode(), RAW, hashlib.sha1).hexdigest()
    assert not signature_ok(RAW, sha1, SECRET)


def test_accepts_uppercase_hex_digits() -> None:
    header = sign(RAW, SECRET)
    assert signature_ok(RAW, "sha256=" + header.removeprefix("sha256=").upper(), SECRET)


def test_accepts_whitespace_around_the_digest() -> None:
    assert signature_ok(RAW, sign(RAW, SECRET) + " ", SECRET)


def test_an_empty_secret_never_verifies_even_a_body_signed_with_it() -> None:
    assert not signature_ok(RAW, sign(RAW, ""), "")


def test_rejects_a_header_with_non_ascii_characters_instead_of_raising() -> None:
    assert not signature_ok(RAW, "sha256=" + "\u00e9" * 64, SECRET)


def test_verifies_a_body_with_non_ascii_text_escaped_as_meta_sends_it() -> None:
    raw = encode(_non_ascii_body())
    assert b"\\u00e9" in raw and b"\\ud83d\\ude00" in raw
    assert raw.isascii()
    assert signature_ok(raw, sign(raw, SECRET), SECRET)


def test_the_same_body_re_encoded_as_raw_utf8_fails_the_check() -> None:
    body = _non_ascii_body()
    header = sign(encode(body), SECRET)
    utf8 = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(utf8) == json.loads(encode(body))
    assert not signature_ok(utf8, header, SECRET)


def test_header_well_formed_wants_the_sha256_prefix_and_64_hex_digits() -> None:
    assert header_well_formed(sign(RAW, SECRET))
    assert header_well_formed("sha256=" + "A" * 64)


def test_header_well_formed_rejects_other_shapes() -> None:
    assert not header_well_formed(None)
    assert not header_well_formed("")
    assert not header_well_formed("sha256=")
    assert not header_well_formed("sha256=" + "a" * 63)
    assert not header_well_formed("sha256=" + "g" * 64)
    assert not header_well_formed("sha1=" + "a" * 40)
    assert not header_well_formed("SHA256=" + "a" * 64)
