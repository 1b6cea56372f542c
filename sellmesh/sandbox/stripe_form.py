"""Stripe's form encoding (`line_items[0][price_data][unit_amount]=500`) read back into nested values."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

FormValue: TypeAlias = "str | dict[str, FormValue]"

_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_PART = re.compile(r"\[([^\[\]]*)\]")
_UINT = re.compile(r"\d{1,15}")


class FormError(ValueError):
    """A parameter Stripe would refuse; `param` names it the way Stripe's errors do."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


def parse_form(pairs: Iterable[tuple[str, str]]) -> dict[str, FormValue]:
    """Nest `a[b][c]=v` pairs into dicts.

    Arrays stay dicts keyed "0", "1", ... because only the endpoint knows whether a
    parameter is an array (`metadata[2024]=x` is a map); `as_list` converts where one is expected.
    """
    tree: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.fullmatch(key)
        if match is None:
            raise FormError(f"Invalid parameter name: {key}", param=key)
        *parents, leaf = [match.group(1), *_PART.findall(match.group(2))]
        node = tree
        for part in parents:
            child = node.setdefault(part, {}) if part else None
            if not isinstance(child, dict):
                raise FormError(f"Conflicting or malformed parameter: {key}", param=key)
            node = child
        leaf = leaf or str(len(node))  # `expand[]=a&expand[]=b` appends, as Rack-style parsers do
        if leaf in node:
            raise FormError(f"Duplicate or conflicting parameter: {key}", param=key)
        node[leaf] = value
    return tree


def as_list(value: FormValue | None, param: str) -> list[FormValue]:
    """An array parameter; Stripe's SDKs always send indices, so they must run 0..n-1."""
    if value is None:
        return []
    if isinstance(value, str) or set(value) != {str(i) for i in range(len(value))}:
        raise FormError(f"Invalid array: {param}", param=param)
    return [value[str(i)] for i in range(len(value))]


def as_dict(value: FormValue | None, param: str) -> dict[str, FormValue]:
    if value is None or value == "":  # Stripe reads an empty value as "unset"
        return {}
    if isinstance(value, str):
        raise FormError(f"Invalid object: {param}", param=param)
    return value


def as_str(value: FormValue | None, param: str, *, max_length: int = 5000) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > max_length):
        raise FormError(f"Invalid string: {param}", param=param)
    return value


def as_uint(value: FormValue | None, param: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _UINT.fullmatch(value):
        raise FormError(f"Invalid non-negative integer: {param}", param=param)
    return int(value)


def as_metadata(value: FormValue | None, param: str) -> dict[str, str]:
    """Stripe's limits: 50 keys of up to 40 characters, values up to 500; an empty value unsets a key."""
    items = {key: as_str(item, f"{param}[{key}]", max_length=500) or "" for key, item in as_dict(value, param).items()}
    if len(items) > 50 or any(len(key) > 40 for key in items):
        raise FormError("Metadata allows 50 keys of at most 40 characters", param=param)
    return {key: item for key, item in items.items() if item}


def reject_unknown(params: Mapping[str, FormValue], allowed: Iterable[str], *, prefix: str = "") -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        name = f"{prefix}[{unknown[0]}]" if prefix else unknown[0]
        raise FormError(f"Received unknown parameter: {name}", param=name)
