"""The one permission table of the owners' API: which roles may take each action.

A 403 depends only on the role and the action, never on the resource named, so it tells a
caller nothing about another tenant's data (that is always a 404).
"""

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class Role(StrEnum):
    OWNER = "owner"
    STAFF = "staff"


_BOTH = frozenset({Role.OWNER, Role.STAFF})
_OWNER = frozenset({Role.OWNER})

PERMISSIONS: Mapping[str, frozenset[Role]] = MappingProxyType(
    {
        "me.read": _BOTH,
        "usage.read": _BOTH,
        "settings.read": _BOTH,
        "settings.write": _OWNER,
        "notify_secret.rotate": _OWNER,
        "channels.read": _BOTH,
        "channels.connect": _OWNER,
        "team.read": _BOTH,
        "team.write": _OWNER,
        "keys.manage": _OWNER,
        "catalog.read": _BOTH,
        "catalog.write": _BOTH,
        "catalog.deactivate": _OWNER,
        "orders.read": _BOTH,
        "orders.fulfil": _BOTH,
        "orders.close": _BOTH,
        "orders.cancel": _OWNER,
        "orders.refund": _OWNER,
        "commands.read": _BOTH,
        "conversations.read": _BOTH,
        "conversations.take_over": _BOTH,
        "conversations.reply": _BOTH,
        "conversations.resolve": _BOTH,
        "availability.set": _BOTH,
        "analytics.read": _OWNER,
    }
)


def allowed(role: str, action: str) -> bool:
    """Unknown roles and unknown actions are refused: a typo in a route must fail closed."""
    roles = PERMISSIONS.get(action)
    return roles is not None and role in roles
