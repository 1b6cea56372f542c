"""Meta's X-Hub-Signature-256 check over the exact raw request bytes, in constant time."""

import hashlib
import hmac

PREFIX = "sha256="


def sign(raw: bytes, secret: str) -> str:
    """The header value Meta would send for `raw`; the tests and `sellmesh chat` sign with it."""
    return PREFIX + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def signature_ok(raw: bytes, header: str | None, secret: str) -> bool:
    # An empty secret would make every forged body "verify" against an unconfigured account.
    # The shape check also keeps non-ASCII out of compare_digest, which raises on it.
    if not secret or header is None or not header_well_formed(header):
        return False
    return hmac.compare_digest(sign(raw, secret), PREFIX + header[len(PREFIX) :].strip().lower())


def header_well_formed(header: str | None) -> bool:
    if not header or not header.startswith(PREFIX):
        return False
    digest = header[len(PREFIX) :].strip()
    return len(digest) == 64 and all(c in "0123456789abcdefABCDEF" for c in digest)
