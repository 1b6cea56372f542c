"""Which messages a command acts on: filters by tenant, key, envelope type and headers."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sellmesh.ops.errors import BadInput
from sellmesh.ops.message import Message


@dataclass(frozen=True)
class Filters:
    tenant: str | None = None
    key: str | None = None
    event_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.tenant or self.key or self.event_type or self.headers)

    def matches(self, message: Message) -> bool:
        if self.tenant is not None and message.tenant_id != self.tenant:
            return False
        if self.key is not None and message.key_text != self.key:
            return False
        if self.event_type is not None and message.event_type != self.event_type:
            return False
        found = message.header_map
        return all(found.get(name) == value for name, value in self.headers)


def parse_header_filters(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """`name=value` pairs; the value may contain `=` and may be empty, the name may not."""
    pairs: list[tuple[str, str]] = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BadInput(f"header filter {item!r} is not name=value (for example --header x-error-kind=exhausted)")
        pairs.append((name.strip(), value))
    return tuple(pairs)


def build_filters(
    *, tenant: str | None, key: str | None, event_type: str | None, headers: Sequence[str] | None
) -> Filters:
    return Filters(tenant=tenant, key=key, event_type=event_type, headers=parse_header_filters(headers or ()))
