"""API key format and hashing: `sm_<prefix>_<secret>`, stored as prefix + SHA-256 of the whole key."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_PREFIX = "sm"


@dataclass(frozen=True)
class IssuedKey:
    plaintext: str
    prefix: str
    secret_hash: str


def issue_key() -> IssuedKey:
    prefix = secrets.token_hex(6)
    plaintext = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return IssuedKey(plaintext=plaintext, prefix=prefix, secret_hash=hash_key(plaintext))


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def parse_prefix(plaintext: str) -> str | None:
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


def key_matches(plaintext: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_key(plaintext), secret_hash)
